//! What `/proc` says about processes: state, parent, process group, start time and
//! environment.
//!
//! A pid alone does not name a process for long: once it is reaped the kernel may hand
//! the number to another one. A pid together with its start time (clock ticks since boot,
//! field 22 of `/proc/<pid>/stat`) and the boot it belongs to does, which is what the
//! state file records so that a restarted supervisor never signals a stranger.

/// The fields of `/proc/<pid>/stat` the supervisor reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// `R`, `S`, `D`, `Z` (zombie: exited, not yet reaped), ...
    pub(crate) state: char,
    /// The parent (after an orphan is adopted, its new one).
    pub(crate) ppid: i32,
    /// The process group.
    pub(crate) pgrp: i32,
    /// Clock ticks after boot at which the process started.
    pub(crate) start_time: u64,
}

impl ProcStat {
    /// A zombie has exited; only its exit status is left for its parent to collect.
    pub(crate) fn is_running(&self) -> bool {
        self.state != 'Z' && self.state != 'X'
    }
}

/// `/proc/<pid>/stat`, or `None` when there is no such process (or no `/proc`).
pub(crate) fn stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses a `stat` line. The command name (field 2) is in parentheses and may itself
/// contain spaces and parentheses, so the fields are counted from the last `)`.
pub(crate) fn parse_stat(text: &str) -> Option<ProcStat> {
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // fields[0] is field 3 (state), so field n is fields[n - 3].
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// Every process there is now, with its `stat`; `None` where there is no `/proc`.
pub(crate) fn all() -> Option<Vec<(u32, ProcStat)>> {
    let entries = std::fs::read_dir("/proc").ok()?;
    Some(
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| Some((pid, stat(pid)?)))
            .collect(),
    )
}

/// True when the environment `pid` started with holds every one of `pairs`. False when
/// it cannot be read: another user's process, or a zombie (it has no memory left).
pub(crate) fn environ_has(pid: u32, pairs: &[(&str, &str)]) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let vars: Vec<&[u8]> = environ.split(|&b| b == 0).collect();
    pairs.iter().all(|(key, value)| {
        let wanted = format!("{key}={value}");
        vars.contains(&wanted.as_bytes())
    })
}

/// This boot's id: a record from an earlier boot names processes that are all gone.
pub(crate) fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// True while any process of group `pgid` is still running (zombies do not count: they
/// have exited, and one whose parent is gone may never be reaped). Where there is no
/// `/proc`, asks the kernel whether the group exists at all.
pub(crate) fn group_running(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), None).is_ok();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(stat)
        .any(|s| s.pgrp == pgid && s.is_running())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_after_a_command_name_with_spaces_and_parentheses() {
        let line = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 1000 200 18446744073709551615";
        let s = parse_stat(line).unwrap();
        assert_eq!(
            s,
            ProcStat {
                state: 'S',
                ppid: 1,
                pgrp: 4242,
                start_time: 987654
            }
        );
        assert!(s.is_running());
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("1 (x) S 1").is_none());
    }

    #[test]
    fn this_process_is_running_in_its_own_group() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        let me = stat(std::process::id()).unwrap();
        assert!(me.is_running());
        assert!(group_running(me.pgrp));
        assert!(boot_id().is_some());
        assert_eq!(me.ppid as u32, std::os::unix::process::parent_id());
        let key = "UNSTUCK_PROCFS_TEST";
        let (set, unset) = ([(key, "absent")], [("PATH", "no such value")]);
        assert!(!environ_has(std::process::id(), &set));
        assert!(!environ_has(std::process::id(), &unset));
        let path = std::env::var("PATH").unwrap_or_default();
        assert!(environ_has(std::process::id(), &[("PATH", &path)]));
    }
}
