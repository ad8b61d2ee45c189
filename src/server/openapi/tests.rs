//! The document against the router and the library's rules: every route served is
//! described (and nothing else), with the scope it needs, every path parameter declared,
//! every error reply a problem document, and the limits the library's constants state.

use std::collections::BTreeSet;

use serde_json::Value;

use super::document;
use crate::server::routes::table;

const METHODS: [&str; 4] = ["get", "post", "put", "delete"];

fn doc() -> Value {
    serde_json::from_str(&document()).expect("the document is JSON")
}

fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                found.push((method.to_owned(), path.clone(), op.clone()));
            }
        }
    }
    found
}

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    &doc["components"]["schemas"][name]
}

#[test]
fn document_describes_exactly_the_routes_served_with_their_scopes() {
    let doc = doc();
    assert_eq!(doc["openapi"], "3.1.0");
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    let served: BTreeSet<(String, String)> = table()
        .iter()
        .map(|r| (r.verb.as_str().to_owned(), r.path.to_owned()))
        .collect();
    assert_eq!(table().len(), served.len(), "a route is in the table twice");
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "served, not documented: {undocumented:?}"
    );
    assert!(unserved.is_empty(), "documented, not served: {unserved:?}");
    for route in table() {
        let op = &doc["paths"][route.path][route.verb.as_str()];
        let expected = match route.scope {
            Some(scope) => serde_json::json!([{ "bearer": [scope.as_str()] }]),
            None => Value::Null,
        };
        assert_eq!(
            op["security"],
            expected,
            "{} {}",
            route.verb.as_str(),
            route.path
        );
    }
}

#[test]
fn operation_ids_are_unique() {
    let doc = doc();
    let mut seen = BTreeSet::new();
    for (method, path, op) in operations(&doc) {
        let id = op["operationId"].as_str().unwrap_or_default().to_owned();
        assert!(seen.insert(id.clone()), "{method} {path}: {id:?} twice");
    }
}

#[test]
fn every_path_parameter_is_declared_and_required() {
    let doc = doc();
    for (method, path, op) in operations(&doc) {
        let in_path: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let empty = Vec::new();
        let declared: BTreeSet<&str> = op["parameters"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .filter(|p| p["in"] == "path")
            .inspect(|p| assert_eq!(p["required"], true, "{method} {path}: {p}"))
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(in_path, declared, "{method} {path}");
    }
}

#[test]
fn names_in_paths_carry_the_naming_rules() {
    let doc = doc();
    let op = &doc["paths"]["/v1/queues/{queue}/executions/{id}"]["get"];
    for p in op["parameters"].as_array().expect("parameters") {
        assert_eq!(p["schema"]["maxLength"], crate::names::MAX_NAME_LEN);
        assert_eq!(p["schema"]["minLength"], 1);
        assert_eq!(p["schema"]["pattern"], "^[A-Za-z0-9_.:-]+$");
    }
}

#[test]
fn every_error_reply_is_a_problem_document() {
    let doc = doc();
    let shared = &doc["components"]["responses"];
    for (method, path, op) in operations(&doc) {
        let responses = op["responses"].as_object().expect("responses");
        assert!(responses.contains_key("503"), "{method} {path}");
        for (status, reply) in responses {
            if status.parse::<u16>().is_ok_and(|code| code < 400) {
                continue;
            }
            let reply = match reply["$ref"].as_str() {
                Some(r) => &shared[r.trim_start_matches("#/components/responses/")],
                None => reply,
            };
            assert_eq!(
                reply["content"]["application/problem+json"]["schema"]["$ref"],
                "#/components/schemas/Problem",
                "{method} {path} {status}"
            );
        }
    }
    let types = schema(&doc, "Problem")["properties"]["type"]["enum"]
        .as_array()
        .expect("problem types")
        .len();
    assert_eq!(types, crate::server::problem::TYPES.len());
    // The extension members a client reads to decide what to do.
    let members = &schema(&doc, "Problem")["properties"];
    for member in ["attempt_ended", "next_attempt", "current_attempt", "health"] {
        assert!(members.get(member).is_some(), "Problem lacks {member}");
    }
    // Both replies that say "try again" say when.
    for name in ["Unavailable", "UnknownOutcome"] {
        assert!(
            shared[name]["headers"].get("Retry-After").is_some(),
            "{name} has no Retry-After"
        );
    }
}

/// The `maximum` of the integer form of a value that may also be null or text.
fn integer_maximum(schema: &Value) -> Option<u64> {
    if schema["type"] == "integer" {
        return schema["maximum"].as_u64();
    }
    schema["oneOf"].as_array()?.iter().find_map(integer_maximum)
}

#[test]
fn request_limits_are_the_library_constants() {
    use crate::ledger::{MAX_CLAIM_BATCH, MAX_CLAIM_WAIT, MAX_ENQUEUE_BATCH, MAX_PAGE};
    let doc = doc();
    let batch = &schema(&doc, "BatchIn")["properties"]["items"];
    assert_eq!(batch["maxItems"], MAX_ENQUEUE_BATCH);
    assert_eq!(batch["minItems"], 1);
    let beats = &schema(&doc, "HeartbeatsIn")["properties"]["heartbeats"];
    assert_eq!(beats["maxItems"], crate::ledger::MAX_HEARTBEAT_BATCH);
    assert_eq!(beats["minItems"], 1);
    let claim = &schema(&doc, "ClaimIn")["properties"];
    assert_eq!(claim["max"]["maximum"], MAX_CLAIM_BATCH);
    assert_eq!(claim["max"]["minimum"], 1);
    let wait_ms = integer_maximum(&claim["wait_ms"]);
    assert_eq!(wait_ms, Some(crate::server::wire::ms(MAX_CLAIM_WAIT)));
    let repeats = &schema(&doc, "TimingsIn")["properties"]["max_repeats"];
    assert_eq!(
        integer_maximum(repeats),
        Some(u64::from(crate::timings::MAX_REPEATS))
    );
    let fingerprint = &schema(&doc, "HeartbeatIn")["properties"]["fingerprint"]["oneOf"][1];
    assert_eq!(
        fingerprint["maxLength"],
        crate::ledger::MAX_FINGERPRINT_BYTES
    );
    assert_eq!(fingerprint["minLength"], 1);
    let grace = &schema(&doc, "TimingsIn")["properties"]["start_grace"];
    let most = crate::server::wire::ms(crate::timings::MAX_DURATION);
    assert_eq!(integer_maximum(grace), Some(most));
    let list = &doc["paths"]["/v1/queues/{queue}/executions"]["get"]["parameters"];
    let limit = list
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "limit"))
        .expect("limit");
    assert_eq!(limit["schema"]["maximum"], MAX_PAGE);
    let state = list
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "state"))
        .expect("state");
    assert_eq!(state["required"], true);
    assert_eq!(state["schema"]["$ref"], "#/components/schemas/State");
    let states = schema(&doc, "State")["enum"].as_array().map(Vec::len);
    assert_eq!(states, Some(crate::ledger::State::ALL.len()));
}

/// `POST /v1/workers` takes a registration without `queues` (or anything else).
#[test]
fn a_registration_needs_no_field() {
    let doc = doc();
    let register = schema(&doc, "RegisterIn");
    assert!(register["properties"]["queues"].is_object());
    assert!(register.get("required").is_none(), "{register}");
}

#[test]
fn the_stop_reasons_listed_are_every_reason_written() {
    let doc = doc();
    let text = doc.to_string();
    let listed: Vec<&str> = crate::StopReason::KNOWN
        .iter()
        .map(|r| r.as_str())
        .collect();
    let wanted = format!("\"enum\":{}", serde_json::to_string(&listed).expect("JSON"));
    assert!(text.contains(&wanted), "no schema lists {wanted}");
    for reason in ["wait_expired", "looping", "worker_lost"] {
        assert!(
            listed.contains(&reason),
            "{reason} missing from StopReason::KNOWN"
        );
    }
}
