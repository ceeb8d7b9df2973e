//! MELD loader: `{train,dev,test}_sent_emo.csv` (RFC-4180 CSV, UTF-8, CRLF).
//!
//! Columns are found by header name, so a reordered file still loads; rows are grouped by
//! `Dialogue_ID` and ordered by `Utterance_ID` (which has gaps; `Sr No.` is not a key).

use crate::error::{DataError, Result, read_file};
use crate::labels::{Dataset, MELD};
use crate::types::{Corpus, Dialogue, Split, Utterance};
use std::collections::BTreeMap;
use std::path::Path;

/// The file of each split inside a MELD folder.
pub fn split_file(split: Split) -> &'static str {
    match split {
        Split::Train => "train_sent_emo.csv",
        Split::Dev => "dev_sent_emo.csv",
        Split::Test => "test_sent_emo.csv",
    }
}

/// Loads all three splits from a folder holding the MELD CSVs.
pub fn load(dir: &Path) -> Result<Corpus> {
    let mut dialogues = Vec::new();
    for split in Split::ALL {
        let path = dir.join(split_file(split));
        dialogues.extend(parse(&read_file(&path)?, &path, split)?);
    }
    Ok(Corpus { dataset: Dataset::Meld, dialogues })
}

/// Parses one MELD CSV; `file` only names the source in errors.
pub fn parse(bytes: &[u8], file: &Path, split: Split) -> Result<Vec<Dialogue>> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(bytes);
    let headers = reader.byte_headers().map_err(|e| csv_error(bytes, file, e))?.clone();
    let column = |name: &str| {
        headers.iter().position(|h| h == name.as_bytes()).ok_or_else(|| DataError::at_line(file, 1, format!("missing column `{name}` in the header")))
    };
    let (c_text, c_speaker, c_emotion) = (column("Utterance")?, column("Speaker")?, column("Emotion")?);
    let (c_dialogue, c_turn) = (column("Dialogue_ID")?, column("Utterance_ID")?);

    let mut by_dialogue: BTreeMap<u64, BTreeMap<u64, Utterance>> = BTreeMap::new();
    let mut record = csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(csv_error(bytes, file, e)),
        }
        let at = record.position().map_or(0, |p| p.byte());
        let line = || line_at(bytes, at); // counted only when reporting an error
        let field = |c: usize, name: &str| -> Result<&str> {
            std::str::from_utf8(&record[c]).map_err(|e| DataError::at_line(file, line(), format!("column `{name}` is not valid UTF-8: {e}")))
        };
        let number = |c: usize, name: &str| -> Result<u64> {
            let s = field(c, name)?;
            s.trim().parse().map_err(|_| DataError::at_line(file, line(), format!("column `{name}` is not a number: {s:?}")))
        };
        let emotion = field(c_emotion, "Emotion")?;
        let label = MELD
            .parse(emotion)
            .ok_or_else(|| DataError::at_line(file, line(), format!("unknown MELD label {emotion:?} (expected one of {})", MELD.joined())))?;
        let utterance = Utterance { speaker: field(c_speaker, "Speaker")?.to_string(), text: field(c_text, "Utterance")?.to_string(), label: Some(label) };
        let (dialogue, turn) = (number(c_dialogue, "Dialogue_ID")?, number(c_turn, "Utterance_ID")?);
        if by_dialogue.entry(dialogue).or_default().insert(turn, utterance).is_some() {
            return Err(DataError::at_line(file, line(), format!("duplicate (Dialogue_ID, Utterance_ID) = ({dialogue}, {turn})")));
        }
    }
    Ok(by_dialogue.into_iter().map(|(id, turns)| Dialogue { id: id.to_string(), split, utterances: turns.into_values().collect() }).collect())
}

/// 1-based line of a record starting at `byte`. On CRLF input csv reports a record as starting
/// at the `\n` that ends the previous line (and its own line count is one short), so that
/// `\n` is counted too.
fn line_at(bytes: &[u8], byte: u64) -> u64 {
    let end = (byte as usize + 1).min(bytes.len());
    let start_is_newline = bytes.get(byte as usize) == Some(&b'\n');
    let counted = if start_is_newline { end } else { end - 1 };
    bytes[..counted].iter().filter(|b| **b == b'\n').count() as u64 + 1
}

fn csv_error(bytes: &[u8], file: &Path, e: csv::Error) -> DataError {
    let line = e.position().map_or(0, |p| line_at(bytes, p.byte()));
    let message = match e.kind() {
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("row has {len} fields, the header has {expected_len} (truncated or malformed row)")
        }
        _ => e.to_string(),
    };
    DataError::at_line(file, line, message)
}
