//! The demo's "waiting is not stuck" rows: work that legitimately waits (an agent waiting
//! for approval, ...) must never be judged stuck, and must carry on once it may. Each
//! scenario lives in a file of its own and gives one row.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One waiting scenario, as the table shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitRow {
    pub case: String,
    pub expected: String,
    pub observed: String,
    pub correct: bool,
}

/// The rows as a table section.
pub struct WaitTable<'a>(pub &'a [WaitRow]);

impl fmt::Display for WaitTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "\n{:<62} expected", "waiting is not stuck")?;
        for r in self.0 {
            writeln!(
                f,
                "{:<62} {}{}",
                r.case,
                r.expected,
                if r.correct {
                    String::new()
                } else {
                    format!("   <-- WRONG: {}", r.observed)
                }
            )?;
        }
        Ok(())
    }
}
