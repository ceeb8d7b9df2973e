//! The unified on-disk format: one Parquet table of utterances from any dataset.
//!
//! Columns: `dataset`, `split`, `dialogue_id` (utf8), `turn` (uint32), `speaker`, `text` (utf8),
//! `label` (utf8, null for context-only turns). Rows are in dialogue order, turns in order,
//! so reading gives back exactly the corpora that were written.

use crate::atomic::write_atomically;
use crate::error::{DataError, Result};
use crate::labels::Dataset;
use crate::types::{Corpus, Dialogue, Split, Utterance};
use arrow_array::{Array, ArrayRef, LargeStringArray, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use std::path::Path;
use std::sync::Arc;

/// The schema of the unified file.
pub fn schema() -> Schema {
    let utf8 = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    Schema::new(vec![
        utf8("dataset", false),
        utf8("split", false),
        utf8("dialogue_id", false),
        Field::new("turn", DataType::UInt32, false),
        utf8("speaker", false),
        utf8("text", false),
        utf8("label", true),
    ])
}

/// Writes corpora to `path` (zstd-compressed Parquet), atomically.
pub fn write(path: &Path, corpora: &[Corpus]) -> Result<()> {
    let rows = || corpora.iter().flat_map(|c| c.dialogues.iter().map(move |d| (c.dataset, d)));
    let turns = || rows().flat_map(|(ds, d)| d.utterances.iter().enumerate().map(move |(t, u)| (ds, d, t, u)));
    let column = |f: &dyn Fn(Dataset, &Dialogue, usize, &Utterance) -> Option<String>| -> ArrayRef {
        Arc::new(turns().map(|(ds, d, t, u)| f(ds, d, t, u)).collect::<StringArray>())
    };
    let turn: UInt32Array = turns().map(|(_, _, t, _)| t as u32).collect();
    let batch = RecordBatch::try_new(
        Arc::new(schema()),
        vec![
            column(&|ds, _, _, _| Some(ds.name().into())),
            column(&|_, d, _, _| Some(d.split.name().into())),
            column(&|_, d, _, _| Some(d.id.clone())),
            Arc::new(turn),
            column(&|_, _, _, u| Some(u.speaker.clone())),
            column(&|_, _, _, u| Some(u.text.clone())),
            column(&|_, _, _, u| u.label.map(|l| l.name().to_string())),
        ],
    )
    .map_err(|e| DataError::in_file(path, format!("cannot build the table: {e}")))?;
    write_parquet(path, &batch)
}

/// Writes one record batch to `path` as zstd Parquet, atomically (a temporary name, then a
/// rename); errors name the file. Every table of the project is written through it.
pub fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<()> {
    let props = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default())).build();
    write_atomically(path, |out| {
        let mut writer = ArrowWriter::try_new(out, batch.schema(), Some(props)).map_err(std::io::Error::other)?;
        writer.write(batch).map_err(std::io::Error::other)?;
        writer.close().map_err(std::io::Error::other)?;
        Ok(())
    })
    .map_err(|e| DataError::in_file(path, format!("cannot write: {e}")))
}

/// Reads a unified file back into one corpus per dataset, in first-seen order.
pub fn read(path: &Path) -> Result<Vec<Corpus>> {
    let err = |m: String| DataError::in_file(path, m);
    let file = std::fs::File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).and_then(|b| b.build()).map_err(|e| err(format!("not a readable Parquet file: {e}")))?;
    let mut corpora: Vec<Corpus> = Vec::new();
    let mut row = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| err(format!("cannot read a row group: {e}")))?;
        let dataset = strings(&batch, "dataset", path)?;
        let split = strings(&batch, "split", path)?;
        let dialogue = strings(&batch, "dialogue_id", path)?;
        let speaker = strings(&batch, "speaker", path)?;
        let text = strings(&batch, "text", path)?;
        let label = strings(&batch, "label", path)?;
        let turn = batch
            .column_by_name("turn")
            .and_then(|c| c.as_any().downcast_ref::<UInt32Array>())
            .ok_or_else(|| err("column `turn` is missing or not uint32".into()))?;
        for i in 0..batch.num_rows() {
            row += 1;
            let at = |m: String| DataError::in_file(path, format!("row {row}: {m}"));
            let get = |c: &[Option<&'_ str>], name: &str| -> Result<String> { c[i].map(str::to_string).ok_or_else(|| at(format!("`{name}` is null"))) };
            let ds_name = get(&dataset, "dataset")?;
            let ds = Dataset::from_name(&ds_name).ok_or_else(|| at(format!("unknown dataset {ds_name:?}")))?;
            let split_name = get(&split, "split")?;
            let sp = Split::from_name(&split_name).ok_or_else(|| at(format!("unknown split {split_name:?}")))?;
            let label = match label[i] {
                None => None,
                Some(l) => Some(ds.labels().parse(l).ok_or_else(|| at(format!("label {l:?} is not a {ds} label")))?),
            };
            let utterance = Utterance { speaker: get(&speaker, "speaker")?, text: get(&text, "text")?, label };
            let corpus = match corpora.iter().position(|c| c.dataset == ds) {
                Some(k) => &mut corpora[k],
                None => {
                    corpora.push(Corpus { dataset: ds, dialogues: Vec::new() });
                    corpora.last_mut().expect("just pushed")
                }
            };
            let id = get(&dialogue, "dialogue_id")?;
            let same = corpus.dialogues.last().is_some_and(|d| d.id == id && d.split == sp);
            if !same {
                corpus.dialogues.push(Dialogue { id: id.clone(), split: sp, utterances: Vec::new() });
            }
            let d = corpus.dialogues.last_mut().expect("just pushed");
            if turn.is_null(i) || turn.value(i) as usize != d.utterances.len() {
                return Err(at(format!("turn {} of dialogue {id} is out of order", turn.value(i))));
            }
            d.utterances.push(utterance);
        }
    }
    Ok(corpora)
}

/// A utf8 column as optional strings (accepts utf8 and large_utf8, as polars writes).
pub fn strings<'a>(batch: &'a RecordBatch, name: &str, path: &Path) -> Result<Vec<Option<&'a str>>> {
    let col = batch.column_by_name(name).ok_or_else(|| DataError::in_file(path, format!("missing column `{name}`")))?;
    if let Some(a) = col.as_any().downcast_ref::<StringArray>() {
        return Ok(a.iter().collect());
    }
    if let Some(a) = col.as_any().downcast_ref::<LargeStringArray>() {
        return Ok(a.iter().collect());
    }
    Err(DataError::in_file(path, format!("column `{name}` is {}, expected utf8", col.data_type())))
}
