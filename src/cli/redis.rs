//! A Redis for the demos: the one given with `--redis`, or a throwaway server of our own.

use unstuck::testkit::{RedisProcess, RedisProcessError, RedisProcessOptions};

/// Where a demo's Redis comes from: a URL the user gave, or a throwaway server of our own.
pub struct DemoRedis {
    pub url: String,
    /// Kept alive for the demo's duration; dropping it stops the server.
    _own: Option<RedisProcess>,
}

impl DemoRedis {
    /// Uses `url` when given, else starts a throwaway `redis-server`.
    ///
    /// # Errors
    /// When `redis-server` is missing or does not start; the message says how to install it.
    pub fn obtain(url: Option<String>) -> Result<Self, RedisProcessError> {
        match url {
            Some(url) => Ok(Self { url, _own: None }),
            None => {
                let server = RedisProcess::start(RedisProcessOptions::default())?;
                Ok(Self {
                    url: server.url().to_owned(),
                    _own: Some(server),
                })
            }
        }
    }
}
