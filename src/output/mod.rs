//! What a run shows and writes: live console lines, the final table, the JSON report.
//!
//! [`report`] turns merged metrics into the report's data (the one shape both the console and
//! the JSON use); [`console`] prints; [`json`] writes atomically. Not here: collecting metrics.

pub mod console;
pub mod json;
pub mod report;
