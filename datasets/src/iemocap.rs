//! IEMOCAP loaders: the official release layout and the DAG-ERC JSON copy.
//!
//! Official layout: `Session{1..5}/dialog/transcriptions/<dialog>.txt` holds
//! `<utt_id> [<start>-<end>]: <text>` lines; `Session{1..5}/dialog/EmoEvaluation/<dialog>.txt`
//! holds tab-separated summary lines `[start - end]<TAB>utt_id<TAB>code<TAB>[V, A, D]` among
//! annotator lines. The two are joined on the utterance id and ordered by start time. The six
//! standard classes are kept unmerged (happy and excited apart); every other turn stays as
//! unlabelled context. Sessions 1-4 are train, Session 5 is test (no standard dev split exists).

use crate::emorynlp::DagErcUtterance;
use crate::error::{DataError, Result, parse_json, read_file};
use crate::labels::{Dataset, Emotion, IEMOCAP};
use crate::types::{Corpus, Dialogue, Split, Utterance};
use std::collections::HashMap;
use std::path::Path;

/// Maps an IEMOCAP label code to one of the six classes; `Ok(None)` for a known code outside them.
pub fn label_from_code(code: &str) -> std::result::Result<Option<Emotion>, String> {
    let name = match code {
        "neu" => "neutral",
        "hap" => "happy",
        "sad" => "sad",
        "ang" => "angry",
        "exc" => "excited",
        "fru" => "frustrated",
        "sur" | "fea" | "dis" | "oth" | "xxx" => return Ok(None),
        other => return Err(format!("unknown IEMOCAP label code {other:?}")),
    };
    Ok(IEMOCAP.parse(name))
}

/// The split of a session number: 1-4 train, 5 test.
pub fn session_split(session: u32) -> Split {
    if session == 5 { Split::Test } else { Split::Train }
}

/// One transcription line.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptLine {
    /// Utterance id, e.g. `Ses01F_impro01_F000`.
    pub id: String,
    /// Start time in seconds.
    pub start: f64,
    /// What is said.
    pub text: String,
}

/// Parses a transcription file; blank lines are skipped, any other line must parse.
pub fn parse_transcription(bytes: &[u8], file: &Path) -> Result<Vec<TranscriptLine>> {
    let mut out = Vec::new();
    for (i, line) in lines(bytes, file)? {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: &str| DataError::at_line(file, i, format!("{why}: expected `<utt_id> [<start>-<end>]: <text>`, got {line:?}"));
        let (id, rest) = line.split_once(' ').ok_or_else(|| bad("no space after the utterance id"))?;
        let rest = rest.strip_prefix('[').ok_or_else(|| bad("no `[` before the times"))?;
        let (times, text) = rest.split_once("]:").ok_or_else(|| bad("no `]:` after the times"))?;
        let (start, end) = times.split_once('-').ok_or_else(|| bad("no `-` between the times"))?;
        let start = seconds(start).ok_or_else(|| bad("start time is not a number"))?;
        seconds(end).ok_or_else(|| bad("end time is not a number"))?;
        out.push(TranscriptLine { id: id.to_string(), start, text: text.trim().to_string() });
    }
    Ok(out)
}

/// Parses an EmoEvaluation file into (utterance id, label or context-only) pairs.
pub fn parse_evaluation(bytes: &[u8], file: &Path) -> Result<Vec<(String, Option<Emotion>)>> {
    let mut out = Vec::new();
    for (i, line) in lines(bytes, file)? {
        if !line.starts_with('[') {
            continue; // header, annotator lines (C-, A-) and blanks
        }
        let bad = |why: String| DataError::at_line(file, i, format!("{why}: expected `[start - end]<TAB>utt_id<TAB>code<TAB>[V, A, D]`, got {line:?}"));
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() != 4 {
            return Err(bad(format!("{} tab-separated fields instead of 4", fields.len())));
        }
        let times = fields[0].trim().trim_start_matches('[').trim_end_matches(']');
        let (start, end) = times.split_once('-').ok_or_else(|| bad("no `-` between the times".into()))?;
        if seconds(start).is_none() || seconds(end).is_none() {
            return Err(bad("times are not numbers".into()));
        }
        let label = label_from_code(fields[2].trim()).map_err(bad)?;
        out.push((fields[1].trim().to_string(), label));
    }
    Ok(out)
}

/// Joins one dialogue's transcription and evaluation, ordered by start time.
pub fn join_dialogue(
    id: &str,
    split: Split,
    transcript: Vec<TranscriptLine>,
    evaluation: Vec<(String, Option<Emotion>)>,
    evaluation_file: &Path,
) -> Result<Dialogue> {
    let known: HashMap<&str, ()> = transcript.iter().map(|t| (t.id.as_str(), ())).collect();
    if let Some((missing, _)) = evaluation.iter().find(|(u, _)| !known.contains_key(u.as_str())) {
        return Err(DataError::in_file(evaluation_file, format!("utterance {missing} has no line in the transcription")));
    }
    let labels: HashMap<String, Option<Emotion>> = evaluation.into_iter().collect();
    let mut transcript = transcript;
    transcript.sort_by(|a, b| a.start.total_cmp(&b.start));
    let utterances =
        transcript.into_iter().map(|t| Utterance { speaker: speaker_of(&t.id), label: labels.get(&t.id).copied().flatten(), text: t.text }).collect();
    Ok(Dialogue { id: id.to_string(), split, utterances })
}

/// Loads `Session1..5` from an `IEMOCAP_full_release` folder.
pub fn load(root: &Path) -> Result<Corpus> {
    let mut dialogues = Vec::new();
    for session in 1..=5u32 {
        let dialog = root.join(format!("Session{session}")).join("dialog");
        let transcripts = dialog.join("transcriptions");
        let mut names: Vec<_> = std::fs::read_dir(&transcripts)
            .map_err(|e| DataError::in_file(&transcripts, format!("cannot list the transcriptions folder: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "txt"))
            .collect();
        names.sort();
        for path in names {
            let Some(id) = path.file_stem().and_then(|s| s.to_str()).map(str::to_string) else { continue };
            if id.starts_with("._") {
                continue; // macOS resource forks shipped in some copies
            }
            let evaluation_path = dialog.join("EmoEvaluation").join(format!("{id}.txt"));
            let transcript = parse_transcription(&read_file(&path)?, &path)?;
            let evaluation = parse_evaluation(&read_file(&evaluation_path)?, &evaluation_path)?;
            dialogues.push(join_dialogue(&id, session_split(session), transcript, evaluation, &evaluation_path)?);
        }
    }
    Ok(Corpus { dataset: Dataset::Iemocap, dialogues })
}

/// Loads the DAG-ERC copy (`{train,dev,test}_data.json` in `dir`).
pub fn load_dagerc(dir: &Path) -> Result<Corpus> {
    let mut dialogues = Vec::new();
    for split in Split::ALL {
        let path = dir.join(crate::emorynlp::dagerc_file(split));
        dialogues.extend(parse_dagerc(&read_file(&path)?, &path, split)?);
    }
    Ok(Corpus { dataset: Dataset::Iemocap, dialogues })
}

/// Parses an IEMOCAP DAG-ERC JSON: label codes, context turns without a `label` key, speakers
/// like `Ses05F_impro01_F` (the dialogue id is the speaker string less its last `_X`).
pub fn parse_dagerc(bytes: &[u8], file: &Path, split: Split) -> Result<Vec<Dialogue>> {
    let raw: Vec<Vec<DagErcUtterance>> = parse_json(bytes, file)?;
    let mut dialogues = Vec::with_capacity(raw.len());
    for (d, turns) in raw.into_iter().enumerate() {
        let id = turns.first().and_then(|t| t.speaker.rsplit_once('_').map(|(prefix, _)| prefix.to_string())).unwrap_or_else(|| format!("{split}-{d}"));
        let mut utterances = Vec::with_capacity(turns.len());
        for (u, t) in turns.into_iter().enumerate() {
            let label = match t.label.as_deref() {
                None => None,
                Some(code) => label_from_code(code).map_err(|e| DataError::at_path(file, format!("[{d}][{u}].label"), e))?,
            };
            utterances.push(Utterance { speaker: speaker_of(&t.speaker), text: t.text, label });
        }
        dialogues.push(Dialogue { id, split, utterances });
    }
    Ok(dialogues)
}

/// The speaker of an utterance id or DAG-ERC speaker string: the gender letter after the last `_`.
fn speaker_of(id: &str) -> String {
    let suffix = id.rsplit('_').next().unwrap_or(id);
    suffix.chars().next().map(String::from).unwrap_or_default()
}

fn seconds(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|x| x.is_finite())
}

/// Numbered lines of a UTF-8 file; invalid UTF-8 is an error naming its line.
fn lines<'a>(bytes: &'a [u8], file: &Path) -> Result<Vec<(u64, &'a str)>> {
    bytes
        .split(|b| *b == b'\n')
        .enumerate()
        .map(|(i, raw)| {
            let line = i as u64 + 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            std::str::from_utf8(raw).map(|s| (line, s)).map_err(|e| DataError::at_line(file, line, format!("not valid UTF-8: {e}")))
        })
        .collect()
}
