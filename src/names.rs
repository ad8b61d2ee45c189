//! The naming rules for namespaces, queues, execution ids and worker ids.
//!
//! Names become parts of Redis keys and of index members, so a few characters are never
//! allowed: `/` separates queue and id in index members, braces would confuse Redis
//! Cluster hash tags, and spaces or control characters make keys unreadable in
//! `redis-cli`. Every ledger call checks its names before it writes anything.

use crate::error::{Error, Result};

/// Longest accepted namespace.
pub const MAX_NAMESPACE_LEN: usize = 64;
/// Longest accepted queue name, execution id and worker id.
pub const MAX_NAME_LEN: usize = 128;
/// The characters a queue name, execution id or worker id may hold besides ASCII letters
/// and digits (the OpenAPI document builds its `pattern` from it).
pub const NAME_PUNCTUATION: &str = "_-.:";

/// Namespaces: letters, digits, `_` and `-`.
///
/// # Errors
/// [`Error::InvalidName`] naming the rule that was broken.
pub fn validate_namespace(namespace: &str) -> Result<()> {
    validate(
        "namespace",
        namespace,
        MAX_NAMESPACE_LEN,
        |c| c.is_ascii_alphanumeric() || c == '_' || c == '-',
        "letters, digits, '_' and '-'",
    )
}

fn validate(
    what: &'static str,
    value: &str,
    max_len: usize,
    allowed: impl Fn(char) -> bool,
    accepted: &str,
) -> Result<()> {
    if value.is_empty() || value.len() > max_len || !value.chars().all(allowed) {
        return Err(Error::InvalidName {
            what,
            value: truncate_for_message(value),
            expected: format!("1 to {max_len} characters: {accepted}"),
        });
    }
    Ok(())
}

fn truncate_for_message(value: &str) -> String {
    const SHOWN: usize = 80;
    if value.chars().count() <= SHOWN {
        value.to_owned()
    } else {
        format!("{}…", value.chars().take(SHOWN).collect::<String>())
    }
}

/// Queue names: letters, digits, `_`, `-`, `.`, `:` (never `/`, which separates queue and
/// id in index members, and never braces, which would confuse hash tags).
///
/// # Errors
/// [`Error::InvalidName`] naming the rule that was broken.
pub fn validate_queue(queue: &str) -> Result<()> {
    validate(
        "queue name",
        queue,
        MAX_NAME_LEN,
        is_name_char,
        "letters, digits, '_', '-', '.', ':'",
    )
}

/// Execution ids follow the queue-name rules.
///
/// # Errors
/// [`Error::InvalidName`] naming the rule that was broken.
pub fn validate_execution_id(id: &str) -> Result<()> {
    validate(
        "execution id",
        id,
        MAX_NAME_LEN,
        is_name_char,
        "letters, digits, '_', '-', '.', ':'",
    )
}

/// Resource names (resource leases) follow the queue-name rules.
///
/// # Errors
/// [`Error::InvalidName`] naming the rule that was broken.
pub fn validate_resource(name: &str) -> Result<()> {
    validate(
        "resource name",
        name,
        MAX_NAME_LEN,
        is_name_char,
        "letters, digits, '_', '-', '.', ':'",
    )
}

/// Worker ids follow the queue-name rules.
///
/// # Errors
/// [`Error::InvalidName`] naming the rule that was broken.
pub fn validate_worker_id(id: &str) -> Result<()> {
    validate(
        "worker id",
        id,
        MAX_NAME_LEN,
        is_name_char,
        "letters, digits, '_', '-', '.', ':'",
    )
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || NAME_PUNCTUATION.contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_are_rejected() {
        assert!(validate_queue("").is_err());
        assert!(validate_queue("a/b").is_err());
        assert!(validate_queue("{tag}").is_err());
        assert!(validate_queue(&"a".repeat(129)).is_err());
        assert!(validate_queue("emails.high:v2").is_ok());
        assert!(validate_execution_id("run 1").is_err());
        assert!(validate_worker_id("host-12-abc.r1").is_ok());
        assert!(validate_namespace("bad ns").is_err());
        assert!(validate_namespace("prod_eu-1").is_ok());
    }
}
