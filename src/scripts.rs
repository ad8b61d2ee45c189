//! The Lua scripts, one per atomic operation, loaded once and invoked by EVALSHA with a
//! NOSCRIPT fallback (so they survive `SCRIPT FLUSH` and fail-overs).
//!
//! Every script is declared here with the shared preludes it runs on, and every call goes
//! through [`Call::run`]: invoke, map a lost reply to [`Error::UnknownOutcome`], read the
//! flat reply under the script's own name, with checked integer reads.

use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::aio::ConnectionLike;
use redis::{RedisResult, ToRedisArgs, Value};

use crate::error::{Error, Result};
use crate::state::{State, ms_to_time};

/// A script: its name (the file stem in `lua/`, used in errors), its source and its SHA1,
/// computed once. The source is the clock (`lua/_clock.lua`), the shared preludes the
/// script runs on, then its own file; or, when its own file has a [`PRELUDES_HERE`] line,
/// the clock, the part of its file above that line, the preludes, then the rest.
pub(crate) struct Lua {
    name: &'static str,
    source: String,
    sha: String,
    /// The preludes (`_lib`, `_watchdog`, ...) in the order they are prepended; the
    /// script's header names the same ones (a test checks).
    #[cfg_attr(not(test), allow(dead_code))]
    preludes: &'static [&'static str],
}

/// The clock every script starts with: the only helpers a hot path above
/// [`PRELUDES_HERE`] may use.
const CLOCK: &str = include_str!("../lua/_clock.lua");

/// A line of a script's own file above which is its hot path: the common case, which
/// returns before Redis runs the preludes' definitions. Lua creates every `local function`
/// of a prelude anew on each call (about 4 µs for the heartbeat's four), so a beat that
/// needs none of them skips that cost.
const PRELUDES_HERE: &str = "-- (the preludes go here)\n";

impl Lua {
    fn new(name: &'static str, preludes: &'static [&'static str], parts: &[&str]) -> Self {
        let (own, shared) = parts.split_last().expect("a script has its own file");
        let shared = shared.join("\n");
        let source = match own.split_once(PRELUDES_HERE) {
            Some((hot, rest)) => format!("{CLOCK}\n{hot}\n{shared}\n{rest}"),
            None => format!("{CLOCK}\n{shared}\n{own}"),
        };
        let sha = redis::Script::new(&source).get_hash().to_owned();
        Self {
            name,
            source,
            sha,
            preludes,
        }
    }

    /// A call with no keys or arguments yet.
    pub(crate) fn call(&self) -> Call<'_> {
        Call {
            lua: self,
            keys: Vec::new(),
            args: Vec::new(),
        }
    }

    /// A call whose first key is `key`.
    pub(crate) fn key(&self, key: impl ToRedisArgs) -> Call<'_> {
        let mut call = self.call();
        call.key(key);
        call
    }

    /// Reads `value` (a reply, or part of one) as this script's flat reply.
    pub(crate) fn reply(&self, value: Value) -> Result<Reply> {
        Reply::parse(self.name, value)
    }
}

/// One invocation: EVALSHA, and on NOSCRIPT (after `SCRIPT FLUSH`, a restart or a
/// fail-over) EVAL with the source, which also puts the script back in the cache. Unlike a
/// load-then-retry, the fallback cannot lose a race with another flush.
pub(crate) struct Call<'a> {
    lua: &'a Lua,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
}

impl Call<'_> {
    pub(crate) fn key(&mut self, key: impl ToRedisArgs) -> &mut Self {
        self.keys.extend(key.to_redis_args());
        self
    }

    pub(crate) fn arg(&mut self, arg: impl ToRedisArgs) -> &mut Self {
        self.args.extend(arg.to_redis_args());
        self
    }

    fn command(&self, verb: &str, body: &str) -> redis::Cmd {
        let mut cmd = redis::cmd(verb);
        cmd.arg(body)
            .arg(self.keys.len())
            .arg(&self.keys)
            .arg(&self.args);
        cmd
    }

    /// Runs the script and reads its flat reply: the one call path of every script.
    ///
    /// # Errors
    /// [`Error::UnknownOutcome`] when the call was sent but no reply came; [`Error::Redis`]
    /// when Redis refused it or could not be reached; [`Error::Protocol`] for a reply
    /// that is not a flat array of words.
    pub(crate) async fn run(&self, conn: &mut impl ConnectionLike) -> Result<Reply> {
        let value = self.run_raw(conn).await?;
        self.lua.reply(value)
    }

    /// Runs the script and returns its reply as Redis sent it, for scripts whose reply
    /// nests (read the parts with [`Lua::reply`]).
    ///
    /// # Errors
    /// As [`run`](Self::run), less the reading.
    pub(crate) async fn run_raw(&self, conn: &mut impl ConnectionLike) -> Result<Value> {
        let sent = self
            .command("EVALSHA", &self.lua.sha)
            .query_async(conn)
            .await;
        let result: RedisResult<Value> = match sent {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                self.command("EVAL", &self.lua.source)
                    .query_async(conn)
                    .await
            }
            other => other,
        };
        result.map_err(|e| Error::from_call(self.lua.name, e))
    }
}

/// Declares every script: `NAME = "file stem" on [preludes]`, the file read from `lua/`,
/// and the list of them all for the tests.
macro_rules! scripts {
    ($($static:ident = $name:literal on [$($prelude:literal),*];)*) => {
        $(
            pub(crate) static $static: LazyLock<Lua> = LazyLock::new(|| {
                Lua::new(
                    $name,
                    &[$($prelude),*],
                    &[
                        $(include_str!(concat!("../lua/", $prelude, ".lua")),)*
                        include_str!(concat!("../lua/", $name, ".lua")),
                    ],
                )
            });
        )*

        /// Every script, for the tests that check them all.
        #[cfg(test)]
        pub(crate) fn all() -> Vec<&'static Lua> {
            vec![$(&*$static),*]
        }
    };
}

scripts! {
    ENQUEUE = "enqueue" on ["_lib"];
    CLAIM = "claim" on ["_lib", "_claim"];
    COMPLETE_CLAIM = "complete_claim" on ["_lib", "_claim", "_complete"];
    HEARTBEAT = "heartbeat" on ["_lib", "_fingerprint", "_pause", "_usage"];
    USAGE_FOLD = "usage_fold" on ["_lib", "_pause", "_usage"];
    FAIL = "fail" on ["_lib", "_fail"];
    SNOOZE = "snooze" on ["_lib", "_fail"];
    CANCEL = "cancel" on ["_lib"];
    AWAIT = "await" on ["_lib"];
    RESUME = "resume" on ["_lib"];
    ACK_CANCEL = "ack_cancel" on ["_lib"];
    SET_QUEUE = "set_queue" on ["_lib", "_pause"];
    PAUSE_QUEUE = "pause_queue" on ["_lib", "_pause"];
    RESUME_QUEUE = "resume_queue" on ["_lib", "_pause"];
    RETRY = "retry" on ["_lib"];
    QUEUE_OVERVIEW = "queue_overview" on ["_lib", "_pause"];
    WORKER_REGISTER = "worker_register" on ["_lib"];
    WORKER_HEARTBEAT = "worker_heartbeat" on ["_lib"];
    WORKER_DEREGISTER = "worker_deregister" on ["_lib"];
    WORKER_PRUNE = "worker_prune" on ["_lib"];
    LEASE = "lease" on ["_lib"];
    LEASE_RELEASE = "lease_release" on ["_lib"];
    REPLICA_BEAT = "replica_beat" on ["_lib"];
    SYSTEMIC_SYNC = "systemic_sync" on ["_lib"];
    ROUND = "round" on ["_lib", "_watchdog", "_fingerprint"];
    ORPHAN = "orphan" on ["_lib", "_watchdog"];
    PRUNE = "prune" on ["_lib", "_watchdog"];
    PIN = "pin" on ["_lib"];
    TERMINATED = "terminated" on ["_lib", "_watchdog"];
    WORKER_ESCALATE = "worker_escalate" on ["_lib", "_watchdog", "_tiers", "_outbox"];
    HOOK_ENQUEUE = "hook_enqueue" on ["_lib", "_outbox"];
    HOOK_CLAIM = "hook_claim" on ["_lib", "_outbox"];
    HOOK_COMPLETE = "hook_complete" on ["_lib", "_watchdog", "_tiers", "_outbox"];
    WORKER_OUTCOME = "worker_outcome" on ["_lib", "_watchdog", "_tiers"];
    WORKER_RECOVER = "worker_recover" on ["_lib", "_watchdog", "_tiers"];
    WORKER_RESET = "worker_reset" on ["_lib", "_watchdog", "_tiers"];
    WORKER_REQUEST = "worker_request" on ["_lib", "_watchdog", "_tiers"];
    RESOURCE_ACQUIRE = "resource_acquire" on ["_lib"];
    RESOURCE_RELEASE = "resource_release" on ["_lib"];
    RESOURCE_EVENT = "resource_event" on ["_lib"];
    RESOURCE_FREE_ENDED = "resource_free_ended" on ["_lib"];
}

/// A script's flat reply: a status word followed by values, read as strings.
#[derive(Debug)]
pub(crate) struct Reply {
    script: &'static str,
    words: Vec<String>,
}

impl Reply {
    /// A reply made of words already read (one part of a batch's reply).
    ///
    /// # Errors
    /// [`Error::Protocol`] for no words.
    pub(crate) fn from_words(script: &'static str, words: Vec<String>) -> Result<Self> {
        if words.is_empty() || words[0].is_empty() {
            return Err(Error::Protocol {
                script,
                detail: "empty reply".into(),
            });
        }
        Ok(Self { script, words })
    }

    pub(crate) fn parse(script: &'static str, value: Value) -> Result<Self> {
        let Value::Array(items) = value else {
            return Err(Error::Protocol {
                script,
                detail: format!("expected an array, got {value:?}"),
            });
        };
        let words = items
            .into_iter()
            .map(|item| match item {
                Value::BulkString(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
                Value::SimpleString(s) => Ok(s),
                Value::Int(n) => Ok(n.to_string()),
                Value::Nil => Ok(String::new()),
                other => Err(Error::Protocol {
                    script,
                    detail: format!("unexpected element {other:?}"),
                }),
            })
            .collect::<Result<Vec<_>>>()?;
        if words.is_empty() {
            return Err(Error::Protocol {
                script,
                detail: "empty reply".into(),
            });
        }
        Ok(Self { script, words })
    }

    pub(crate) fn status(&self) -> &str {
        &self.words[0]
    }

    pub(crate) fn len(&self) -> usize {
        self.words.len()
    }

    pub(crate) fn str(&self, i: usize) -> Result<&str> {
        self.words
            .get(i)
            .map(String::as_str)
            .ok_or_else(|| self.unexpected())
    }

    /// Word `i` as a signed integer.
    pub(crate) fn i64(&self, i: usize) -> Result<i64> {
        self.str(i)?.parse().map_err(|_| self.unexpected())
    }

    /// Word `i` as a count or an instant: never negative.
    pub(crate) fn u64(&self, i: usize) -> Result<u64> {
        self.str(i)?.parse().map_err(|_| self.unexpected())
    }

    /// Word `i` as an attempt number.
    pub(crate) fn u32(&self, i: usize) -> Result<u32> {
        self.str(i)?.parse().map_err(|_| self.unexpected())
    }

    /// Word `i` as a length.
    pub(crate) fn usize(&self, i: usize) -> Result<usize> {
        self.str(i)?.parse().map_err(|_| self.unexpected())
    }

    /// Word `i` as a `0|1` flag.
    pub(crate) fn flag(&self, i: usize) -> Result<bool> {
        match self.str(i)? {
            "1" => Ok(true),
            "0" => Ok(false),
            _ => Err(self.unexpected()),
        }
    }

    /// Word `i` as milliseconds (a duration, or zero).
    pub(crate) fn millis(&self, i: usize) -> Result<Duration> {
        self.u64(i).map(Duration::from_millis)
    }

    /// Word `i` as an instant in Redis milliseconds.
    pub(crate) fn time(&self, i: usize) -> Result<DateTime<Utc>> {
        ms_to_time(self.i64(i)?)
    }

    /// Word `i` as a state name.
    pub(crate) fn state(&self, i: usize) -> Result<State> {
        self.str(i)?.parse().map_err(|_| self.unexpected())
    }

    /// The error for a reply this version does not understand.
    pub(crate) fn unexpected(&self) -> Error {
        Error::Protocol {
            script: self.script,
            detail: format!("unexpected reply {:?}", self.words),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `-- Prelude:` line of a script's own file.
    fn declared_in_header(lua: &Lua) -> Vec<String> {
        let line = lua
            .source
            .lines()
            .find(|l| l.starts_with("-- Prelude:"))
            .unwrap_or_else(|| panic!("{}.lua has no Prelude line", lua.name));
        line.trim_start_matches("-- Prelude:")
            .split(',')
            .map(|p| p.trim().trim_end_matches(".lua").to_owned())
            .collect()
    }

    #[test]
    fn every_header_names_the_preludes_it_runs_on() {
        for lua in all() {
            assert_eq!(
                declared_in_header(lua),
                lua.preludes,
                "{}.lua's Prelude line",
                lua.name
            );
        }
    }

    #[test]
    fn the_fields_the_scripts_read_are_in_the_glossary() {
        let known = crate::fields::all_names();
        // The lists scripts read an execution through: HMGETs of the execution hash.
        for lua in all() {
            for call in lua.source.split("redis.call('HMGET', ").skip(1) {
                let (target, rest) = call.split_once(',').unwrap_or(("", ""));
                // KEYS[1] is the execution hash in the attempt and cancel scripts only.
                let first_is_exec = [
                    "heartbeat",
                    "fail",
                    "snooze",
                    "cancel",
                    "ack_cancel",
                    "await",
                    "resume",
                    "resource_event",
                ]
                .contains(&lua.name);
                let exec = ["key", "e.key", "exec"].contains(&target.trim())
                    || (first_is_exec && target.trim() == "KEYS[1]");
                if !exec {
                    continue;
                }
                let list = rest.split(')').next().unwrap_or("");
                for field in list.split('\'').skip(1).step_by(2) {
                    if field.is_empty() {
                        continue; // a '' default, as in ('um:' .. (ARGV[16] or ''))
                    }
                    // A prefix joined to a name at run time ('um:' .. model) is the
                    // glossary's "um:<model>".
                    let family = field.ends_with(':')
                        && known.iter().any(|k| {
                            k.strip_prefix(field)
                                .is_some_and(|rest| rest.starts_with('<'))
                        });
                    assert!(
                        known.contains(&field) || family,
                        "{}.lua reads {field:?}",
                        lua.name
                    );
                }
            }
        }
        // The watchdog's judgement reads its list from _watchdog.lua.
        let watchdog = include_str!("../lua/_watchdog.lua");
        let list = watchdog
            .split("local EXEC_FIELDS = {")
            .nth(1)
            .and_then(|rest| rest.split('}').next())
            .expect("EXEC_FIELDS in _watchdog.lua");
        for field in list.split('\'').skip(1).step_by(2) {
            assert!(known.contains(&field), "_watchdog.lua reads {field:?}");
        }
    }
}
