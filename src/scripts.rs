//! The Lua scripts, one per atomic operation, loaded once and invoked by EVALSHA with a
//! NOSCRIPT fallback (so they survive `SCRIPT FLUSH` and fail-overs).

use std::sync::LazyLock;

use redis::aio::ConnectionLike;
use redis::{FromRedisValue, RedisResult, ToRedisArgs, Value};

use crate::error::{Error, Result};

/// Helpers shared by every script, prepended to each of them.
const LIB: &str = include_str!("../lua/_lib.lua");

/// A script's source and its SHA1, computed once.
pub(crate) struct Lua {
    source: String,
    sha: String,
}

impl Lua {
    fn new(source: String) -> Self {
        let sha = redis::Script::new(&source).get_hash().to_owned();
        Self { source, sha }
    }

    pub(crate) fn prepare_invoke(&self) -> Call<'_> {
        Call {
            lua: self,
            keys: Vec::new(),
            args: Vec::new(),
        }
    }

    pub(crate) fn key(&self, key: impl ToRedisArgs) -> Call<'_> {
        let mut call = self.prepare_invoke();
        call.key(key);
        call
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

    pub(crate) async fn invoke_async<T: FromRedisValue>(
        &self,
        conn: &mut impl ConnectionLike,
    ) -> RedisResult<T> {
        match self
            .command("EVALSHA", &self.lua.sha)
            .query_async(conn)
            .await
        {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                self.command("EVAL", &self.lua.source)
                    .query_async(conn)
                    .await
            }
            other => other,
        }
    }
}

macro_rules! script {
    ($name:ident, $file:literal) => {
        pub(crate) static $name: LazyLock<Lua> =
            LazyLock::new(|| Lua::new(format!("{}\n{}", LIB, include_str!($file))));
    };
}

script!(ENQUEUE, "../lua/enqueue.lua");
script!(HEARTBEAT, "../lua/heartbeat.lua");
script!(FAIL, "../lua/fail.lua");
script!(CANCEL, "../lua/cancel.lua");
script!(ACK_CANCEL, "../lua/ack_cancel.lua");
script!(SET_QUEUE, "../lua/set_queue.lua");
script!(WORKER_REGISTER, "../lua/worker_register.lua");
script!(WORKER_HEARTBEAT, "../lua/worker_heartbeat.lua");
script!(WORKER_DEREGISTER, "../lua/worker_deregister.lua");
script!(WORKER_PRUNE, "../lua/worker_prune.lua");
script!(LEASE, "../lua/lease.lua");
script!(LEASE_RELEASE, "../lua/lease_release.lua");
script!(REPLICA_BEAT, "../lua/replica_beat.lua");
script!(SYSTEMIC_SYNC, "../lua/systemic_sync.lua");

/// Scripts built from shared pieces prepended after [`LIB`]: the claim loop (used by
/// `claim` and `complete_claim`) and the completion.
macro_rules! composed_script {
    ($name:ident, [$($part:literal),+]) => {
        pub(crate) static $name: LazyLock<Lua> = LazyLock::new(|| {
            let parts: &[&str] = &[LIB, $(include_str!($part)),+];
            Lua::new(parts.join("\n"))
        });
    };
}

composed_script!(CLAIM, ["../lua/_claim.lua", "../lua/claim.lua"]);
composed_script!(
    COMPLETE_CLAIM,
    [
        "../lua/_claim.lua",
        "../lua/_complete.lua",
        "../lua/complete_claim.lua"
    ]
);

/// Helpers of the watchdog scripts, prepended after [`LIB`].
const WATCHDOG_LIB: &str = include_str!("../lua/_watchdog.lua");

macro_rules! watchdog_script {
    ($name:ident, $file:literal) => {
        pub(crate) static $name: LazyLock<Lua> = LazyLock::new(|| {
            Lua::new(format!(
                "{}\n{}\n{}",
                LIB,
                WATCHDOG_LIB,
                include_str!($file)
            ))
        });
    };
}

watchdog_script!(ROUND, "../lua/round.lua");
watchdog_script!(ORPHAN, "../lua/orphan.lua");

/// A script's flat reply: a status word followed by values, read as strings.
#[derive(Debug)]
pub(crate) struct Reply {
    script: &'static str,
    words: Vec<String>,
}

impl Reply {
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

    pub(crate) fn int(&self, i: usize) -> Result<i64> {
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
