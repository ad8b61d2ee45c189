//! One row of the demo's "waiting is not stuck" scenarios (a paused queue, ...): what was
//! expected, what was observed, and whether they agree.

use serde::{Deserialize, Serialize};

/// One scenario, as the table shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioRow {
    pub case: String,
    pub expected: String,
    pub observed: String,
    pub correct: bool,
}
