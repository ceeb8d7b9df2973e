//! Per-split counts of a corpus: what `selfemo data stats` prints.

use crate::labels::Emotion;
use crate::types::{Corpus, Split};
use serde::Serialize;
use std::fmt::Write;

/// Counts of one split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SplitStats {
    /// Which split.
    pub split: Split,
    /// Number of dialogues.
    pub dialogues: usize,
    /// Labelled utterances (the ERC targets).
    pub utterances: usize,
    /// Unlabelled, context-only turns.
    pub context_turns: usize,
    /// Count of each label of the dataset's set, in the set's order (zeros included).
    pub labels: Vec<(Emotion, usize)>,
}

/// Counts every split of `corpus`.
pub fn stats(corpus: &Corpus) -> Vec<SplitStats> {
    Split::ALL
        .into_iter()
        .map(|split| {
            let mut labels: Vec<(Emotion, usize)> = corpus.dataset.labels().emotions().map(|e| (e, 0)).collect();
            let (mut dialogues, mut utterances, mut context_turns) = (0, 0, 0);
            for d in corpus.split(split) {
                dialogues += 1;
                for u in &d.utterances {
                    match u.label {
                        Some(l) => {
                            utterances += 1;
                            if let Some(slot) = labels.iter_mut().find(|(e, _)| *e == l) {
                                slot.1 += 1;
                            }
                        }
                        None => context_turns += 1,
                    }
                }
            }
            SplitStats { split, dialogues, utterances, context_turns, labels }
        })
        .collect()
}

/// A plain-text table: one row per count, one column per split.
pub fn render(corpus: &Corpus, stats: &[SplitStats]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", corpus.dataset);
    let _ = write!(out, "{:<14}", "");
    for s in stats {
        let _ = write!(out, "{:>9}", s.split.name());
    }
    out.push('\n');
    let mut row = |name: &str, f: &dyn Fn(&SplitStats) -> usize| {
        let _ = write!(out, "{name:<14}");
        for s in stats {
            let _ = write!(out, "{:>9}", f(s));
        }
        out.push('\n');
    };
    row("dialogues", &|s| s.dialogues);
    row("utterances", &|s| s.utterances);
    row("context turns", &|s| s.context_turns);
    for (i, e) in corpus.dataset.labels().emotions().enumerate() {
        row(&format!("  {e}"), &|s| s.labels[i].1);
    }
    out
}
