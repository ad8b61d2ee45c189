//! What commands print on stdout: one line at a time (a closed pipe ends the command
//! quietly), and JSON documents with the HTTP API's field names.

use std::io::Write;

use serde::Serialize;

/// Writes one line to stdout; exits 0 when stdout is closed, 1 on any other write error.
pub(crate) fn emit_line(line: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_fmt(line)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("unstuck: cannot write to stdout: {e}");
            std::process::exit(1);
        }
    }
}

/// Prints `value` as pretty JSON, the shape `--json` gives scripts.
pub(crate) fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    out!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
