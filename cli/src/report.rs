//! JSON reports of the subcommands, written to a temporary name and renamed.

use anyhow::{Context, Result};
use serde::Serialize;
use std::io::Write;
use std::path::Path;

/// Writes `value` as pretty JSON to `path` (a temporary sibling first, then renamed, so a
/// killed command never leaves half a report).
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value)?;
    selfemo_datasets::atomic::write_atomically(path, |f| f.write_all(&bytes)).with_context(|| format!("writing {}", path.display()))
}
