//! What can go wrong in a run, typed: each error names the file, the field or the step at
//! fault, so the binary can print it as it is.

use selfemo_datasets::DataError;
use selfemo_eval::plots::PlotError;
use selfemo_model::ModelError;
use std::fmt::Display;
use std::path::{Path, PathBuf};

/// A run's failure.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A file of the run (or one it reads) could not be read, parsed or written.
    #[error("{}: {message}", path.display())]
    File {
        /// The file or folder.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The config asks for something the data or the model cannot give (names the field).
    #[error("{0}")]
    Config(String),
    /// A dataset file is bad.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The policy could not be loaded.
    #[error("loading the policy: {0}")]
    Model(#[from] ModelError),
    /// A chart could not be drawn.
    #[error(transparent)]
    Plot(#[from] PlotError),
    /// A step produced NaN or inf; the run stops with its last good checkpoint.
    #[error("{0}")]
    NonFinite(String),
    /// A device's thread of a run over several devices (`devices`) failed without an error of
    /// its own (a panic); the message names the rank, its device and the panic.
    #[error("{0}")]
    DeviceThread(String),
}

/// Results of the trainer.
pub type Result<T> = std::result::Result<T, TrainError>;

/// Names the file an error is about: `std::fs::read(&p).at(&p)?`.
pub trait AtPath<T> {
    /// The error as a [`TrainError::File`] about `path`.
    fn at(self, path: &Path) -> Result<T>;
}

impl<T, E: Display> AtPath<T> for std::result::Result<T, E> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|e| TrainError::File { path: path.to_path_buf(), message: e.to_string() })
    }
}
