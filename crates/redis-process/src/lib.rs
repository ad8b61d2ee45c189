//! Throwaway `redis-server` processes, alone or as a local 3-master cluster, for tests and demos.
//!
//! The one place of the project with `unsafe` code (`PR_SET_PDEATHSIG`, `atexit`, probing a
//! pid): the library itself forbids it.
//!
//! Each server listens on 127.0.0.1 on a free port, keeps nothing on disk and lives in its own
//! temp directory; dropping the handle kills it and removes the directory. Servers are spawned
//! from one thread that never exits, with `PR_SET_PDEATHSIG` set, because the kernel sends that
//! signal when the *spawning thread* dies: a server kept in a `static` (never dropped) must still
//! die with the process rather than outlive `cargo test`.
//!
//! # Layout
//! - this file: [`RedisProcess`], its options and errors;
//! - `cluster`: [`RedisCluster`], three processes joined by `redis-cli --cluster create`;
//! - `spawn`: the spawner thread, `PR_SET_PDEATHSIG` and temp-directory cleanup.

use std::fs::{self, File};
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

mod cluster;
mod spawn;
#[cfg(test)]
mod tests;

pub use cluster::RedisCluster;

mod control;

/// A free port can be taken by someone else before redis binds it; this many tries is plenty.
const PORT_ATTEMPTS: u32 = 5;
const LOG_TAIL_LINES: usize = 20;

/// How to start a [`RedisProcess`] (or every node of a [`RedisCluster`]).
#[derive(Debug, Clone)]
pub struct RedisProcessOptions {
    /// Appended after our defaults (`--save "" --appendonly no --maxmemory-policy noeviction`);
    /// redis-server keeps the last value of a repeated option, so these win. Never pass
    /// `--port`, `--bind` or `--dir`: the handle reports the port it chose.
    pub extra_args: Vec<String>,
    /// `None` means `UNSTUCK_REDIS_SERVER` if set, else `redis-server` on `PATH`.
    pub server_binary: Option<PathBuf>,
    /// How long a fresh server may take to answer PING.
    pub startup_timeout: Duration,
}

impl Default for RedisProcessOptions {
    fn default() -> Self {
        Self {
            extra_args: Vec::new(),
            server_binary: None,
            startup_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a throwaway Redis could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisProcessError {
    #[error(
        "`{binary}` was not found: install it with `apt-get install redis-server redis-tools` \
         (`make test` installs it for you), or set UNSTUCK_REDIS_SERVER / UNSTUCK_REDIS_CLI \
         to the binary's path"
    )]
    NotInstalled { binary: String },
    #[error("could not start `{binary}`: {source}")]
    Spawn { binary: String, source: io::Error },
    #[error("could not create {}: {source}", .path.display())]
    TempDir { path: PathBuf, source: io::Error },
    #[error("could not find a free port on 127.0.0.1: {source}")]
    NoFreePort { source: io::Error },
    #[error(
        "redis-server for port {port} exited before answering PING ({status}); log tail:\n{log_tail}"
    )]
    Exited {
        port: u16,
        status: String,
        log_tail: String,
    },
    #[error(
        "redis-server on port {port} did not answer PING within {timeout:?} \
         (last error: {last_error}); log tail:\n{log_tail}"
    )]
    StartupTimeout {
        port: u16,
        timeout: Duration,
        last_error: String,
        log_tail: String,
    },
    #[error("`redis-cli --cluster create` failed ({status}); output:\n{output}")]
    ClusterCreate { status: String, output: String },
    #[error(
        "cluster node {url} did not report cluster_state:ok within {timeout:?} (last: {last_state})"
    )]
    ClusterNotReady {
        url: String,
        timeout: Duration,
        last_state: String,
    },
}

impl RedisProcessError {
    /// True when the fix is to install Redis rather than to look at a log.
    pub fn is_not_installed(&self) -> bool {
        matches!(self, Self::NotInstalled { .. })
    }
}

/// A `redis-server` child on 127.0.0.1, killed (and its temp directory removed) on drop.
#[derive(Debug)]
pub struct RedisProcess {
    child: Child,
    port: u16,
    url: String,
    /// Holds the log (read for error messages) and, for cluster nodes, `nodes.conf`.
    dir: PathBuf,
    /// How it was started, to start it again on the same port and data (`control.rs`).
    binary: PathBuf,
    args: Vec<std::ffi::OsString>,
    startup_timeout: Duration,
}

impl RedisProcess {
    /// Starts a server on a free port and waits until it answers PING.
    ///
    /// # Errors
    ///
    /// [`RedisProcessError::NotInstalled`] when there is no `redis-server`; otherwise an error
    /// that carries the server's log tail.
    pub fn start(options: RedisProcessOptions) -> Result<Self, RedisProcessError> {
        Self::start_node(&options, false)
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The client port; redis-cli takes it as `-p`.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn start_node(
        options: &RedisProcessOptions,
        cluster_node: bool,
    ) -> Result<Self, RedisProcessError> {
        let binary = options
            .server_binary
            .clone()
            .or_else(|| std::env::var_os("UNSTUCK_REDIS_SERVER").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("redis-server"));
        let mut attempt = 1;
        loop {
            match Self::try_start(&binary, options, cluster_node) {
                Err(RedisProcessError::Exited { log_tail, .. })
                    if attempt < PORT_ATTEMPTS && log_tail.contains("Address already in use") =>
                {
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    fn try_start(
        binary: &Path,
        options: &RedisProcessOptions,
        cluster_node: bool,
    ) -> Result<Self, RedisProcessError> {
        let (port, bus_port) = free_port_pair()?;
        let dir = spawn::make_temp_dir()?;
        let log = File::create(dir.join("redis.log")).and_then(|log| Ok((log.try_clone()?, log)));
        let (stdout, stderr) = log.map_err(|source| RedisProcessError::TempDir {
            path: dir.clone(),
            source,
        })?;

        let mut args: Vec<std::ffi::OsString> = vec![
            "--port".into(),
            port.to_string().into(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--daemonize".into(),
            "no".into(),
            "--dir".into(),
            dir.clone().into(),
        ];
        for a in [
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxmemory-policy",
            "noeviction",
        ] {
            args.push(a.into());
        }
        if cluster_node {
            // An explicit bus port: the default (port + 10000) may be taken or exceed 65535.
            for a in [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "5000",
                "--cluster-port",
            ] {
                args.push(a.into());
            }
            args.push(bus_port.to_string().into());
        }
        args.extend(options.extra_args.iter().map(Into::into));
        let mut command = Command::new(binary);
        command
            .args(&args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);

        let child = match spawn::spawn_tied_to_process(command) {
            Ok(child) => child,
            Err(source) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(spawn_error(binary, source));
            }
        };
        spawn::register_server(child.id());
        // From here on, Drop kills the child and removes the directory on every error path.
        let mut process = RedisProcess {
            child,
            port,
            url: format!("redis://127.0.0.1:{port}/"),
            dir,
            binary: binary.to_path_buf(),
            args,
            startup_timeout: options.startup_timeout,
        };
        process.wait_ready(options.startup_timeout)?;
        Ok(process)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), RedisProcessError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log_tail = self.log_tail();
                return Err(RedisProcessError::Exited {
                    port: self.port,
                    status: status.to_string(),
                    log_tail,
                });
            }
            let last_error = match self.answers_ping() {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            if Instant::now() >= deadline {
                let log_tail = self.log_tail();
                return Err(RedisProcessError::StartupTimeout {
                    port: self.port,
                    timeout,
                    last_error,
                    log_tail,
                });
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// PING, then check the answer came from our child: a server started concurrently on the
    /// same port would otherwise pass for ours while ours dies with "Address already in use".
    fn answers_ping(&self) -> Result<(), String> {
        let mut connection = redis::Client::open(self.url.as_str())
            .and_then(|client| client.get_connection_with_timeout(Duration::from_millis(500)))
            .map_err(|error| error.to_string())?;
        let pong: String = redis::cmd("PING")
            .query(&mut connection)
            .map_err(|error| error.to_string())?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(&mut connection)
            .map_err(|error| error.to_string())?;
        let ours = format!("process_id:{}", self.child.id());
        match info.lines().any(|line| line.trim() == ours) {
            true if pong == "PONG" => Ok(()),
            true => Err(format!("PING answered {pong:?}")),
            false => Err("another server answered on this port".to_owned()),
        }
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        if spawn::unregister_server(self.child.id()) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn spawn_error(binary: &Path, source: io::Error) -> RedisProcessError {
    let binary = binary.display().to_string();
    match source.kind() {
        io::ErrorKind::NotFound => RedisProcessError::NotInstalled { binary },
        _ => RedisProcessError::Spawn { binary, source },
    }
}

/// Two distinct free ports (client and cluster bus), found by binding port 0 and letting go.
/// Both listeners are held together so the OS cannot hand out the same port twice.
fn free_port_pair() -> Result<(u16, u16), RedisProcessError> {
    let bind = || {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| Ok((listener.local_addr()?.port(), listener)))
    };
    let ((port, _first), (bus_port, _second)) = bind()
        .and_then(|first| Ok((first, bind()?)))
        .map_err(|source| RedisProcessError::NoFreePort { source })?;
    Ok((port, bus_port))
}
