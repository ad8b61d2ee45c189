//! Faults on demand, for the fault suite: kill a server hard, start it again on the same
//! port and data directory, or lose its data.

use std::fs::{self, OpenOptions};
use std::process::{Command, Stdio};

use super::{RedisProcess, RedisProcessError, spawn, spawn_error};

impl RedisProcess {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`: no shutdown, no final write. What the data directory holds is what
    /// survives (with `--appendonly yes --appendfsync always`, every acknowledged write).
    pub fn kill_hard(&mut self) {
        if spawn::unregister_server(self.child.id()) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Starts the server again, as it was started, on the same port and data directory,
    /// and waits until it answers PING. Kills it first when it still runs.
    ///
    /// # Errors
    /// As [`RedisProcess::start`] (another process may have taken the port meanwhile).
    pub fn restart(&mut self) -> Result<(), RedisProcessError> {
        self.kill_hard();
        let log = OpenOptions::new()
            .append(true)
            .open(self.dir.join("redis.log"))
            .and_then(|log| Ok((log.try_clone()?, log)));
        let (stdout, stderr) = log.map_err(|source| RedisProcessError::TempDir {
            path: self.dir.clone(),
            source,
        })?;
        let mut command = Command::new(&self.binary);
        command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        self.child = spawn::spawn_tied_to_process(command)
            .map_err(|source| spawn_error(&self.binary, source))?;
        spawn::register_server(self.child.id());
        self.wait_ready(self.startup_timeout)
    }

    /// Kills the server and deletes its data (snapshot and append-only files), so the next
    /// [`restart`](Self::restart) starts empty: Redis losing its data.
    pub fn kill_and_wipe(&mut self) {
        self.kill_hard();
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.ends_with(".rdb") || name.starts_with("appendonly") {
                    let path = entry.path();
                    let _ = fs::remove_dir_all(&path).or_else(|_| fs::remove_file(&path));
                }
            }
        }
    }
}
