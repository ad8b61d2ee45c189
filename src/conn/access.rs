//! What the Redis user must be allowed, checked once per connect with `ACL DRYRUN`.
//!
//! Without the check a missing permission shows late and vaguely: a command a script may
//! not call fails that script with "can't run this command or subcommand" and the
//! script's SHA, a key outside the user's patterns with "one of the keys". `ACL DRYRUN`
//! (Redis 7) names the command or key, so [`check`] can list everything missing in one
//! [`Error::Permission`] before the first call. A user not allowed `ACL DRYRUN` (or an
//! older Redis) is not checked; its calls still fail on the first refusal.

use redis::Value;

use super::Connection;
use crate::error::{Error, Result};
use crate::keys::Keyspace;

/// Every command unstuck sends and every command its scripts call, with arguments of the
/// right shape (`ACL DRYRUN` checks arity and finds the keys; it runs nothing). `{key}`
/// stands for a key of the namespace. Absent on purpose: `CONFIG GET` and `INFO` (the
/// eviction check reads either, and only warns without both) and `CLIENT SETINFO` (the
/// redis crate names itself with it and ignores a refusal).
const COMMANDS: &[&str] = &[
    // Sent by the library and the redis crate: connecting, reading, scripts.
    "PING",
    "UNWATCH", // the blocking pool's recycle check, with PING
    "EVALSHA 0000000000000000000000000000000000000000 1 {key}",
    "EVAL probe 1 {key}", // a script's first run after SCRIPT FLUSH or a restart
    "TIME",
    "XREAD STREAMS {key} 0",
    "XRANGE {key} - +",
    "XREVRANGE {key} + -",
    "HGETALL {key}",
    "HGET {key} f",
    "HMGET {key} f",
    "HKEYS {key}",
    "HLEN {key}",
    "ZRANGE {key} 0 -1",
    "ZSCORE {key} m", // when a queued execution becomes claimable (`Ledger::get`)
    "ZREVRANGE {key} 0 -1",
    "ZCARD {key}",
    "ZREM {key} m",
    "SMEMBERS {key}",
    "LRANGE {key} 0 -1",
    "LLEN {key}",
    // Called by the scripts of lua/ (a test checks this list covers them).
    "DEL {key}",
    "GET {key}",
    "SET {key} v",
    "INCR {key}",
    "HSET {key} f v",
    "HDEL {key} f",
    "HINCRBY {key} f 1",
    "LINDEX {key} 0",
    "LPOP {key}",
    "LPUSH {key} v",
    "RPUSH {key} v",
    "LREM {key} 0 v",
    "LTRIM {key} 0 -1",
    "SADD {key} m",
    "SISMEMBER {key} m",
    "SREM {key} m",
    "SCARD {key}",
    "XADD {key} * f v",
    "ZADD {key} 1 m",
    "ZCOUNT {key} -inf +inf",
    "ZRANGEBYSCORE {key} -inf +inf",
    "ZREMRANGEBYSCORE {key} -inf +inf",
];

/// What the cluster client sends besides: the slot map, and redirections during resharding.
const CLUSTER_COMMANDS: &[&str] = &["CLUSTER SLOTS", "ASKING"];

/// Checks that `user` may run every command unstuck needs on the namespace's keys.
///
/// # Errors
/// [`Error::Authentication`] when Redis wants a password the URL does not give,
/// [`Error::Permission`] naming every command and key the user is refused, [`Error::Redis`]
/// when Redis cannot be reached.
pub(super) async fn check(
    conn: &mut Connection,
    keys: &Keyspace,
    user: &str,
    cluster: bool,
) -> Result<()> {
    // Also the first command of the connection: a missing password shows here.
    let _: String = redis::cmd("PING")
        .query_async(conn)
        .await
        .map_err(|e| super::refused(e, user))?;
    let can_check: redis::RedisResult<Value> = dry_run(user, "PING", "").query_async(conn).await;
    if let Err(e) = can_check {
        if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
            return Err(e.into());
        }
        tracing::info!(
            user,
            error = %e,
            "cannot check the Redis user's permissions (ACL DRYRUN refused); a missing one \
             fails the first call that needs it"
        );
        return Ok(());
    }
    let mut pipe = redis::pipe();
    let mut asked = 0;
    let commands = COMMANDS
        .iter()
        .chain(if cluster { CLUSTER_COMMANDS } else { &[] });
    let key = keys.events(0);
    for command in commands {
        pipe.add_command(dry_run(user, command, &key));
        asked += 1;
    }
    // Every kind of key, read and written (a user may hold read-only patterns), including
    // the last partition's (patterns may name partitions).
    for key in [
        keys.events(keys.partitions() - 1),
        keys.replica_index(),
        keys.worker_index(),
    ] {
        pipe.add_command(dry_run(user, "HGETALL {key}", &key));
        pipe.add_command(dry_run(user, "HSET {key} f v", &key));
        asked += 2;
    }
    let replies: Vec<Value> = pipe.query_async(conn).await?;
    if replies.len() != asked {
        return Err(Error::Protocol {
            script: "ACL DRYRUN",
            detail: format!("{} replies to {asked} commands", replies.len()),
        });
    }
    let mut commands = Vec::new();
    let mut keys = Vec::new();
    for reply in &replies {
        let refusal = match reply {
            Value::Okay => continue,
            Value::SimpleString(s) if s == "OK" => continue,
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            Value::SimpleString(s) => s.clone(),
            other => {
                return Err(Error::Protocol {
                    script: "ACL DRYRUN",
                    detail: format!("unexpected reply {other:?}"),
                });
            }
        };
        let (list, name) = refused_name(&refusal);
        let list = if list == Refused::Key {
            &mut keys
        } else {
            &mut commands
        };
        if !list.contains(&name) {
            list.push(name);
        }
    }
    if commands.is_empty() && keys.is_empty() {
        return Ok(());
    }
    Err(Error::Permission {
        user: user.to_owned(),
        commands,
        keys,
    })
}

/// `ACL DRYRUN <user> <command...>`, `{key}` replaced by `key`.
fn dry_run(user: &str, command: &str, key: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("ACL");
    cmd.arg("DRYRUN").arg(user);
    for word in command.split_whitespace() {
        cmd.arg(if word == "{key}" { key } else { word });
    }
    cmd
}

#[derive(Debug, PartialEq, Eq)]
enum Refused {
    Command,
    Key,
}

/// What a refusal names: "This user has no permissions to run the 'xread' command" or
/// "... to access the '{prod:0}:events' key". Text this version does not know is kept
/// whole, as a command.
fn refused_name(refusal: &str) -> (Refused, String) {
    let quoted = refusal
        .split_once('\'')
        .and_then(|(_, rest)| rest.rsplit_once('\''));
    match quoted {
        Some((name, tail)) if tail.trim() == "key" => (Refused::Key, name.to_owned()),
        Some((name, tail)) if tail.trim() == "command" => (Refused::Command, name.to_owned()),
        _ => (Refused::Command, refusal.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_command_or_the_key() {
        assert_eq!(
            refused_name("This user has no permissions to run the 'xread' command"),
            (Refused::Command, "xread".into())
        );
        assert_eq!(
            refused_name("This user has no permissions to access the '{b:0}:e' key"),
            (Refused::Key, "{b:0}:e".into())
        );
        assert_eq!(
            refused_name("something new"),
            (Refused::Command, "something new".into())
        );
    }

    /// Every `redis.call` of every script in `lua/` is in [`COMMANDS`], so the check (and
    /// the README's ACL line, which the ACL test uses) cannot fall behind a new script.
    #[test]
    fn every_command_a_script_calls_is_checked() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/lua");
        let checked: Vec<&str> = COMMANDS
            .iter()
            .filter_map(|c| c.split_whitespace().next())
            .collect();
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).expect("lua/ is readable") {
            let path = entry.expect("a lua/ entry").path();
            let source = std::fs::read_to_string(&path).expect("a readable script");
            for call in source.split("redis.call(").skip(1) {
                let name: String = call
                    .trim_start_matches(['\'', '"'])
                    .chars()
                    .take_while(|c| c.is_ascii_alphabetic())
                    .collect();
                assert!(
                    !name.is_empty(),
                    "{}: a call whose command is not a literal",
                    path.display()
                );
                let name = name.to_ascii_uppercase();
                assert!(
                    checked.contains(&name.as_str()),
                    "{} calls {name}, which conn/access.rs does not check",
                    path.display()
                );
                seen += 1;
            }
        }
        assert!(seen > 100, "found only {seen} redis.call in lua/");
    }
}
