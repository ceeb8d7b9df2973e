//! Dialogues, utterances and splits: the shape every loader produces.

use crate::labels::{Dataset, Emotion};
use serde::Serialize;
use std::fmt;

/// A standard split of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training data.
    Train,
    /// Development (validation) data: model selection happens here.
    Dev,
    /// Test data: reported numbers only.
    Test,
}

impl Split {
    /// The three splits in order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Dev, Split::Test];

    /// The split's name in files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Dev => "dev",
            Split::Test => "test",
        }
    }

    /// Parses `train`, `dev` (or `valid`) and `test`.
    pub fn from_name(name: &str) -> Option<Split> {
        match name.trim().to_ascii_lowercase().as_str() {
            "train" => Some(Split::Train),
            "dev" | "valid" | "validation" => Some(Split::Dev),
            "test" => Some(Split::Test),
            _ => None,
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Utterance {
    /// Who speaks; several speakers of one turn are joined by spaces.
    pub speaker: String,
    /// What is said.
    pub text: String,
    /// The gold emotion; `None` for a context-only turn (IEMOCAP keeps such turns).
    pub label: Option<Emotion>,
}

/// One conversation, its turns in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dialogue {
    /// The dataset's own id (MELD Dialogue_ID, EmoryNLP scene id, IEMOCAP dialog name).
    pub id: String,
    /// The split it belongs to.
    pub split: Split,
    /// Turns in order.
    pub utterances: Vec<Utterance>,
}

/// A labelled turn to predict: dialogue and turn index into a [`Corpus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    /// Index of the dialogue in [`Corpus::dialogues`].
    pub dialogue: usize,
    /// Index of the turn in that dialogue.
    pub turn: usize,
}

/// All dialogues of one dataset, every split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corpus {
    /// Which dataset, and so which label set.
    pub dataset: Dataset,
    /// Dialogues of every split, each split in its file order.
    pub dialogues: Vec<Dialogue>,
}

impl Corpus {
    /// Dialogues of one split.
    pub fn split(&self, split: Split) -> impl Iterator<Item = &Dialogue> {
        self.dialogues.iter().filter(move |d| d.split == split)
    }

    /// Every labelled turn of `split`, in order.
    pub fn targets(&self, split: Split) -> Vec<Target> {
        let mut out = Vec::new();
        for (i, d) in self.dialogues.iter().enumerate().filter(|(_, d)| d.split == split) {
            for (t, u) in d.utterances.iter().enumerate() {
                if u.label.is_some() {
                    out.push(Target { dialogue: i, turn: t });
                }
            }
        }
        out
    }
}
