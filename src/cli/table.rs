//! Tables for people: aligned columns, long cells cut, times as "how long ago".

use chrono::{DateTime, Utc};

/// Longest cell shown; longer ones are cut with `…` (`--json` has them whole).
const MAX_CELL: usize = 60;

/// `s` cut to `n` characters, the last one `…` when cut.
pub(crate) fn clip(s: &str, n: usize) -> String {
    if s.chars().count() > n {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    } else {
        s.to_owned()
    }
}

/// Renders `rows` under `headers`, columns padded to their widest cell.
pub(crate) fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let cut = |s: &str| clip(s, MAX_CELL);
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| cut(c).replace('\n', " ")).collect())
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = vec![line(headers.to_vec())];
    for row in &rows {
        out.push(line(row.iter().map(String::as_str).collect()));
    }
    out.join("\n")
}

/// "4s ago", "3m ago", "in 2s"; "-" for none.
pub(crate) fn ago(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    let Some(at) = at else { return "-".into() };
    let ms = (now - at).num_milliseconds();
    let (ms, future) = if ms < 0 { (-ms, true) } else { (ms, false) };
    let text = duration_ms(ms.max(0) as u64);
    if future {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// [`duration_ms`] of a duration.
pub(crate) fn duration(d: std::time::Duration) -> String {
    duration_ms(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A duration in milliseconds, short: "850ms", "12s", "3m", "2h", "4d".
pub(crate) fn duration_ms(ms: u64) -> String {
    match ms {
        ms if ms < 1_000 => format!("{ms}ms"),
        ms if ms < 60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        ms if ms < 3_600_000 => format!("{}m", ms / 60_000),
        ms if ms < 86_400_000 => format!("{}h", ms / 3_600_000),
        ms => format!("{}d", ms / 86_400_000),
    }
}

/// An optional value as a cell.
pub(crate) fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}
