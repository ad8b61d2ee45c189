//! The command to run: found as `spawn` will find it before anything starts, and shown
//! on one line in notes.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{ExecConfig, ExecError};

impl ExecConfig {
    /// [`validate`](Self::validate), and checks that the program can be run, before
    /// anything connects or starts.
    ///
    /// # Errors
    /// As [`validate`](Self::validate); [`ExecError::Command`] when the program is not an
    /// executable file (or not found in `PATH`).
    pub fn check(&self) -> Result<(), ExecError> {
        self.validate()?;
        find_program(&self.command[0]).map(drop)
    }
}

/// Finds `program` as `spawn` will: a path as given, a bare name in `PATH`.
fn find_program(program: &OsStr) -> Result<PathBuf, ExecError> {
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let path = Path::new(program);
    let refused = |reason: &str| ExecError::Command {
        program: program.to_string_lossy().into_owned(),
        reason: reason.into(),
    };
    if path.components().count() > 1 || program.to_string_lossy().contains('/') {
        return if executable(path) {
            Ok(path.to_owned())
        } else {
            Err(refused("no executable file there"))
        };
    }
    let search = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&search)
        .map(|dir| dir.join(program))
        .find(|candidate| executable(candidate))
        .ok_or_else(|| refused("not found in PATH"))
}

/// The command on one line, for notes: an argument with spaces in quotes, line breaks
/// and runs of spaces as one space, cut at 120 characters.
pub(super) fn command_line(command: &[std::ffi::OsString]) -> String {
    let text = command
        .iter()
        .map(|a| {
            let a = a.to_string_lossy();
            let words: Vec<&str> = a.split_whitespace().collect();
            if words.len() == 1 && words[0] == a {
                a.into_owned()
            } else {
                format!("'{}'", words.join(" "))
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    match text.char_indices().nth(120) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_as_spawn_does() {
        assert!(find_program(OsStr::new("sh")).is_ok());
        assert!(find_program(OsStr::new("/bin/sh")).is_ok());
        let missing = find_program(OsStr::new("no-such-program-here")).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "cannot run no-such-program-here: not found in PATH"
        );
        let not_executable = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        assert_eq!(
            command_line(&["sh".into(), "-c".into(), "\n  read -r p\n  echo $p".into()]),
            "sh -c 'read -r p echo $p'"
        );
        assert_eq!(command_line(&["x".repeat(200).into()]).chars().count(), 121);
        assert!(find_program(OsStr::new(not_executable)).is_err());
    }
}
