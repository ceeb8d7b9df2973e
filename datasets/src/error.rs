//! Load errors that say where the bad input is: file, then line or JSON path.

use std::fmt;
use std::path::PathBuf;

/// Where in a file a problem was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// 1-based line number.
    Line(u64),
    /// A JSON path such as `[3][12].label` or `episodes[0].scenes[2]`.
    JsonPath(String),
    /// The file as a whole (missing, unreadable, empty).
    File,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(n) => write!(f, "line {n}"),
            Location::JsonPath(p) if p.is_empty() || p == "." => write!(f, "at the JSON root"),
            Location::JsonPath(p) => write!(f, "at JSON path {p}"),
            Location::File => write!(f, "file"),
        }
    }
}

/// A dataset file that could not be read or did not follow its format.
#[derive(Debug, thiserror::Error)]
#[error("{}: {location}: {message}", file.display())]
pub struct DataError {
    /// The file that holds the problem.
    pub file: PathBuf,
    /// Where in the file.
    pub location: Location,
    /// What is wrong, in words.
    pub message: String,
}

impl DataError {
    /// An error at a line of `file`.
    pub fn at_line(file: impl Into<PathBuf>, line: u64, message: impl Into<String>) -> Self {
        Self { file: file.into(), location: Location::Line(line), message: message.into() }
    }

    /// An error at a JSON path of `file`.
    pub fn at_path(file: impl Into<PathBuf>, path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { file: file.into(), location: Location::JsonPath(path.into()), message: message.into() }
    }

    /// An error about `file` as a whole.
    pub fn in_file(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self { file: file.into(), location: Location::File, message: message.into() }
    }
}

/// Result of every loader in this crate.
pub type Result<T> = std::result::Result<T, DataError>;

/// Reads a whole file, naming it in the error.
pub(crate) fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| DataError::in_file(path, format!("cannot read: {e}")))
}

/// Parses JSON bytes into `T`, reporting a type error with its JSON path and a syntax error with its line.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], file: &std::path::Path) -> Result<T> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() { DataError::at_path(file, path, inner.to_string()) } else { DataError::at_line(file, inner.line() as u64, inner.to_string()) }
    })?;
    de.end().map_err(|e| DataError::at_line(file, e.line() as u64, e.to_string()))?;
    Ok(value)
}
