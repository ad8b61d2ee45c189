//! Bearer tokens and their scopes: parsed once from the settings, compared in constant
//! time, never logged.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use super::AppState;
use super::problem::ApiError;
use crate::error::{Error, Result};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every `GET`: queues, executions, events, workers, watchdog, metrics.
    Read,
    /// Read, plus queue settings, enqueue and cancel.
    Orchestrator,
    /// Claims, attempt calls and the worker registry.
    Worker,
    /// Everything.
    Admin,
}

impl Scope {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Scope::Read),
            "orchestrator" => Some(Scope::Orchestrator),
            "worker" => Some(Scope::Worker),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    /// The scope's name, as in the settings.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Orchestrator => "orchestrator",
            Scope::Worker => "worker",
            Scope::Admin => "admin",
        }
    }

    /// Whether a token of this scope may use a route that needs `need`.
    fn allows(self, need: Scope) -> bool {
        match self {
            Scope::Admin => true,
            Scope::Orchestrator => matches!(need, Scope::Read | Scope::Orchestrator),
            Scope::Read => need == Scope::Read,
            Scope::Worker => need == Scope::Worker,
        }
    }
}

/// The configured tokens. Empty: every route is open (and the server binds to loopback
/// only).
pub(crate) struct Tokens(Vec<(Vec<u8>, Scope)>);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} configured)", self.0.len()) // never the secrets
    }
}

/// Shortest secret accepted: a guessable token is no protection.
const MIN_SECRET: usize = 12;

impl Tokens {
    /// Parses `scope:secret` entries.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming `server.tokens` and the entry's position (never
    /// its secret).
    pub(crate) fn parse(entries: &[String]) -> Result<Self> {
        let mut tokens = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let bad = |expected: &str| Error::InvalidConfig {
                key: "server.tokens".into(),
                value: format!("entry {} ({} characters)", i + 1, entry.len()),
                expected: expected.into(),
            };
            let (scope, secret) = entry.split_once(':').ok_or_else(|| {
                bad("scope:secret, scope one of read, orchestrator, worker, admin")
            })?;
            let scope = Scope::parse(scope.trim()).ok_or_else(|| {
                bad("a scope of read, orchestrator, worker or admin before the ':'")
            })?;
            if secret.len() < MIN_SECRET || secret.chars().any(char::is_whitespace) {
                return Err(bad("a secret of at least 12 characters, no spaces"));
            }
            tokens.push((secret.as_bytes().to_vec(), scope));
        }
        Ok(Tokens(tokens))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The scope of `presented`, comparing against every token in constant time.
    fn scope_of(&self, presented: &[u8]) -> Option<Scope> {
        let mut found = None;
        for (secret, scope) in &self.0 {
            if bool::from(secret.as_slice().ct_eq(presented)) {
                found = Some(*scope);
            }
        }
        found
    }
}

/// The token a request presents: `Authorization: Bearer <secret>`, the secret alone (not
/// the `scope:secret` form of the settings). The scheme name is case-insensitive (RFC 9110).
fn presented(request_headers: &axum::http::HeaderMap) -> Option<Vec<u8>> {
    let value = request_headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())?;
    let (scheme, secret) = value.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| secret.trim().as_bytes().to_vec())
}

/// What the caller's token may do.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct SessionOut {
    /// `read`, `orchestrator`, `worker` or `admin` (`admin` when no tokens are configured);
    /// absent when no token, or an unknown one, was presented.
    pub(crate) scope: Option<String>,
    /// No tokens are configured: every route is open (loopback only).
    pub(crate) open: bool,
    /// It may read queues, executions, events, workers and the watchdog.
    pub(crate) can_read: bool,
    /// It may enqueue, cancel and retry.
    pub(crate) can_steer: bool,
    /// It may use the admin routes (pause and resume a queue).
    #[serde(default)]
    pub(crate) can_admin: bool,
}

/// What the presented token may do, so a client (the dashboard) asks for a token only
/// when it needs one and shows only what it may do. Always `200`: a missing or unknown
/// token is described (no scope), not refused.
#[utoipa::path(get, path = "/v1/session", tag = "service",
    responses((status = 200, body = SessionOut)))]
pub(crate) async fn session(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Json<SessionOut> {
    let open = state.tokens.is_empty();
    let scope = if open {
        Some(Scope::Admin)
    } else {
        presented(&headers).and_then(|t| state.tokens.scope_of(&t))
    };
    Json(SessionOut {
        scope: scope.map(|s| s.as_str().to_owned()),
        open,
        can_read: scope.is_some_and(|s| s.allows(Scope::Read)),
        can_steer: scope.is_some_and(|s| s.allows(Scope::Orchestrator)),
        can_admin: scope.is_some_and(|s| s.allows(Scope::Admin)),
    })
}

/// Who a request that passed its scope check is: what an operator action (a queue pause)
/// records as done `by` it. Tokens have no names, so the scope is what names the caller.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caller {
    /// The token's scope; `None` when no tokens are configured (every route open).
    scope: Option<Scope>,
}

impl Caller {
    /// `http:<scope>`, or `http:open` on a server without tokens.
    pub(crate) fn name(self) -> String {
        format!("http:{}", self.scope.map_or("open", Scope::as_str))
    }
}

/// Middleware of a route group that needs `need`; it hands the route its [`Caller`].
pub(crate) async fn require(
    State((state, need)): State<(AppState, Scope)>,
    mut request: Request,
    next: Next,
) -> Response {
    if state.tokens.is_empty() {
        request.extensions_mut().insert(Caller { scope: None });
        return next.run(request).await;
    }
    match presented(request.headers()).and_then(|t| state.tokens.scope_of(&t)) {
        None => ApiError::Unauthorized.into_response(),
        Some(scope) if !scope.allows(need) => ApiError::Forbidden {
            scope: need.as_str(),
        }
        .into_response(),
        Some(scope) => {
            request
                .extensions_mut()
                .insert(Caller { scope: Some(scope) });
            next.run(request).await
        }
    }
}
