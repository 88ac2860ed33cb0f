//! Writes the JSON report atomically: a temporary file in the same directory, then a rename,
//! so a reader never sees half a report, whatever ends the run.

use std::io::Write;
use std::path::Path;

use crate::error::AppError;
use crate::output::report::RunReport;

/// Writes `report` to `path` as pretty JSON via a temp file and rename.
pub fn write_atomic(path: &Path, report: &RunReport) -> Result<(), AppError> {
    let fail = |source| AppError::Output {
        path: path.display().to_string(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        serde_json::to_writer_pretty(&mut file, report)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(e));
    }
    Ok(())
}
