//! Conversations and emotion labels for emotion recognition in conversation (ERC).
//!
//! Loaders for MELD, EmoryNLP (two formats) and IEMOCAP (official release and DAG-ERC copy)
//! produce one shape, [`Corpus`] of [`Dialogue`]s of [`Utterance`]s. Each dataset has its own
//! [`LabelSet`] with case-insensitive synonyms. The unified Parquet format ([`unified`]) stores
//! any of them. No burn here: this crate builds and tests in seconds.

pub mod atomic;
pub mod context;
pub mod emorynlp;
pub mod error;
pub mod iemocap;
pub mod labels;
pub mod meld;
pub mod sampling;
pub mod stats;
pub mod types;
pub mod unified;

pub use context::{ContextSpan, ContextWindow, WindowAnchor};
pub use error::{DataError, Location, Result};
pub use labels::{Dataset, Emotion, LabelSet, Mention};
pub use types::{Corpus, Dialogue, Split, Target, Utterance};

use std::path::{Path, PathBuf};

/// The `data/` folder shipped with the repository, or `$SELFEMO_DATA` when set.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("SELFEMO_DATA").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("data"))
}

/// Loads a dataset from `path`, or from its folder in [`default_data_dir`].
///
/// MELD and EmoryNLP ship in `data/`. IEMOCAP is licensed: `path` must name either an
/// `IEMOCAP_full_release` folder (with `Session1`..`Session5`) or a folder of DAG-ERC JSON files.
pub fn load(dataset: Dataset, path: Option<&Path>) -> Result<Corpus> {
    let dir = path.map(Path::to_path_buf).unwrap_or_else(|| default_data_dir().join(dataset.name()));
    match dataset {
        Dataset::Meld => meld::load(&dir),
        Dataset::Emorynlp => emorynlp::load(&dir),
        Dataset::Iemocap if dir.join("Session1").is_dir() => iemocap::load(&dir),
        Dataset::Iemocap if dir.join(emorynlp::dagerc_file(Split::Train)).is_file() => iemocap::load_dagerc(&dir),
        Dataset::Iemocap => Err(DataError::in_file(
            &dir,
            "no IEMOCAP here: pass --path to an IEMOCAP_full_release folder (Session1..Session5) or to a folder of DAG-ERC train/dev/test_data.json",
        )),
    }
}
