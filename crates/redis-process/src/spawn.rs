//! Spawning children and temp directories so that neither outlives this process.

use std::fs;
use std::io;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once, OnceLock, mpsc};
use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

use super::RedisProcessError;

/// Temp directories are named `unstuck-redis-{pid}-...` so stale ones can be swept by pid.
const DIR_PREFIX: &str = "unstuck-redis-";

/// Pids of servers not yet dropped. Servers held in statics are never dropped, so the atexit
/// hook kills and reaps them (no zombies left for init) and then removes their directories.
static RUNNING_SERVERS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

pub(super) fn register_server(pid: u32) {
    RUNNING_SERVERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(pid);
}

/// False when the atexit hook already killed and reaped `pid`, so it must not be signalled.
pub(super) fn unregister_server(pid: u32) -> bool {
    let mut running = RUNNING_SERVERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let before = running.len();
    running.retain(|running_pid| *running_pid != pid);
    running.len() < before
}

/// Creates a fresh `unstuck-redis-{pid}-{n}-{nanos}` directory under the system temp dir.
pub(super) fn make_temp_dir() -> Result<PathBuf, RedisProcessError> {
    static CLEANUP: Once = Once::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // A normal exit (libtest calls `exit`) runs the atexit hook; after a kill, PDEATHSIG ends
    // the servers and the next process sweeps the directories whose pid is gone.
    CLEANUP.call_once(|| {
        remove_dirs_where(pid_is_gone);
        // SAFETY: registers a plain `extern "C" fn` that only signals, reaps and deletes.
        unsafe { libc::atexit(stop_servers_at_exit) };
    });
    loop {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos());
        let name = format!(
            "{DIR_PREFIX}{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        match fs::create_dir(&path) {
            Ok(()) => return Ok(path),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(RedisProcessError::TempDir { path, source }),
        }
    }
}

extern "C" fn stop_servers_at_exit() {
    let running = std::mem::take(
        &mut *RUNNING_SERVERS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    );
    for pid in running {
        let pid = pid as libc::pid_t;
        // SAFETY: `pid` is our unreaped child (Drop unregisters before it reaps), so it cannot
        // have been reused by another process.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
    let own = std::process::id() as i32;
    remove_dirs_where(|pid| pid == own);
}

/// Removes our temp directories whose owning pid (from the name) satisfies `doomed`.
fn remove_dirs_where(doomed: impl Fn(i32) -> bool) {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name.to_str().and_then(|name| {
            name.strip_prefix(DIR_PREFIX)?
                .split('-')
                .next()?
                .parse::<i32>()
                .ok()
        });
        if pid.is_some_and(|pid| pid > 0 && doomed(pid)) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn pid_is_gone(pid: i32) -> bool {
    // SAFETY: signal 0 only checks whether the pid exists; nothing is delivered.
    let probe = unsafe { libc::kill(pid, 0) };
    probe == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

struct SpawnRequest {
    command: Command,
    reply: mpsc::Sender<io::Result<Child>>,
}

/// Spawns `command` from the never-exiting spawner thread, with the child set to be killed
/// when that thread (that is, our process) dies.
pub(super) fn spawn_tied_to_process(mut command: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (requests, incoming) = mpsc::channel::<SpawnRequest>();
        thread::Builder::new()
            .name("redis-spawner".to_owned())
            .spawn(move || {
                for mut request in incoming {
                    let _ = request.reply.send(request.command.spawn());
                }
            })
            .expect("the OS refused to start the redis-spawner thread");
        requests
    });
    die_with_parent(&mut command);
    let (reply, answer) = mpsc::channel();
    spawner
        .send(SpawnRequest { command, reply })
        .map_err(|_| io::Error::other("the redis-spawner thread is gone"))?;
    answer
        .recv()
        .map_err(|_| io::Error::other("the redis-spawner thread is gone"))?
}

#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (prctl, getppid) run between fork and exec, and
    // nothing allocates.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) == -1 {
                return Err(io::Error::last_os_error());
            }
            // Our process may have died before prctl took effect; the signal would never come.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}
