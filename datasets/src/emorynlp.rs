//! EmoryNLP loaders: the original season JSON (`emotion-detection-{dev,tst}.json`) and the
//! DAG-ERC JSON (`dagerc/{train,dev,test}_data.json`), which holds all three splits.
//!
//! A turn with several speakers keeps them all, joined by spaces (as DAG-ERC writes them), so
//! both formats give the same utterances.

use crate::error::{DataError, Result, parse_json, read_file};
use crate::labels::{Dataset, EMORYNLP, LabelSet};
use crate::types::{Corpus, Dialogue, Split, Utterance};
use serde::Deserialize;
use std::path::Path;

#[derive(Deserialize)]
struct Season {
    episodes: Vec<Episode>,
}

#[derive(Deserialize)]
struct Episode {
    scenes: Vec<Scene>,
}

#[derive(Deserialize)]
struct Scene {
    scene_id: String,
    utterances: Vec<SeasonUtterance>,
}

#[derive(Deserialize)]
struct SeasonUtterance {
    speakers: Vec<String>,
    transcript: String,
    emotion: String,
}

/// A DAG-ERC utterance; IEMOCAP's copy leaves `label` out on context-only turns.
#[derive(Deserialize)]
pub(crate) struct DagErcUtterance {
    pub text: String,
    pub speaker: String,
    pub label: Option<String>,
}

/// The DAG-ERC file of each split.
pub fn dagerc_file(split: Split) -> &'static str {
    match split {
        Split::Train => "train_data.json",
        Split::Dev => "dev_data.json",
        Split::Test => "test_data.json",
    }
}

/// The season JSON of a split, where the original release has it (dev and test here).
pub fn season_file(split: Split) -> &'static str {
    match split {
        Split::Train => "emotion-detection-trn.json",
        Split::Dev => "emotion-detection-dev.json",
        Split::Test => "emotion-detection-tst.json",
    }
}

/// Loads all three splits from `dir/dagerc/`, the one source here that has the train split.
pub fn load(dir: &Path) -> Result<Corpus> {
    let mut dialogues = Vec::new();
    for split in Split::ALL {
        let path = dir.join("dagerc").join(dagerc_file(split));
        dialogues.extend(parse_dagerc(&read_file(&path)?, &path, split)?);
    }
    Ok(Corpus { dataset: Dataset::Emorynlp, dialogues })
}

/// Parses an original season JSON: one scene is one dialogue.
pub fn parse_season(bytes: &[u8], file: &Path, split: Split) -> Result<Vec<Dialogue>> {
    let season: Season = parse_json(bytes, file)?;
    let mut dialogues = Vec::new();
    for (e, episode) in season.episodes.into_iter().enumerate() {
        for (s, scene) in episode.scenes.into_iter().enumerate() {
            let mut utterances = Vec::with_capacity(scene.utterances.len());
            for (u, raw) in scene.utterances.into_iter().enumerate() {
                let path = || format!("episodes[{e}].scenes[{s}].utterances[{u}].emotion");
                let label = parse_label(&EMORYNLP, &raw.emotion, file, path)?;
                utterances.push(Utterance { speaker: raw.speakers.join(" "), text: raw.transcript, label: Some(label) });
            }
            dialogues.push(Dialogue { id: scene.scene_id, split, utterances });
        }
    }
    Ok(dialogues)
}

/// Parses an EmoryNLP DAG-ERC JSON; dialogue ids are `<split>-<index>`, as the format has none.
pub fn parse_dagerc(bytes: &[u8], file: &Path, split: Split) -> Result<Vec<Dialogue>> {
    let raw: Vec<Vec<DagErcUtterance>> = parse_json(bytes, file)?;
    let mut dialogues = Vec::with_capacity(raw.len());
    for (d, turns) in raw.into_iter().enumerate() {
        let mut utterances = Vec::with_capacity(turns.len());
        for (u, t) in turns.into_iter().enumerate() {
            let path = || format!("[{d}][{u}].label");
            let label = t.label.as_deref().ok_or_else(|| DataError::at_path(file, path(), "missing label"))?;
            let label = parse_label(&EMORYNLP, label, file, path)?;
            utterances.push(Utterance { speaker: t.speaker, text: t.text, label: Some(label) });
        }
        dialogues.push(Dialogue { id: format!("{split}-{d}"), split, utterances });
    }
    Ok(dialogues)
}

/// Maps a label through `set`, or errors naming the JSON path.
pub(crate) fn parse_label(set: &LabelSet, label: &str, file: &Path, path: impl FnOnce() -> String) -> Result<crate::labels::Emotion> {
    set.parse(label).ok_or_else(|| DataError::at_path(file, path(), format!("unknown label {label:?} (expected one of {})", set.joined())))
}
