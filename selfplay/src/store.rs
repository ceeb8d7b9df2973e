//! `iter-<k>/flywheel.parquet`: the rows one iteration kept, in a flat table pandas and polars
//! read directly. Context turns are two list<utf8> columns (speakers, texts); rewards that do
//! not apply to a row's kind are null.

use crate::flywheel::{FlywheelRow, Kind};
use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{Array, ArrayRef, Float64Array, ListArray, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use selfemo_datasets::unified::strings;
use selfemo_datasets::{DataError, Result, Utterance};
use std::path::Path;
use std::sync::Arc;

const TEXT_COLUMNS: [&str; 8] = ["kind", "source", "speaker", "turn", "label", "prompt", "completion", "prediction"];
const REWARD_COLUMNS: [&str; 5] = ["reward_format", "reward_recognition", "reward_expression", "reward_consistency", "reward_total"];

/// The table's schema.
pub fn schema() -> Schema {
    let list = || DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    let mut fields = vec![Field::new("iteration", DataType::UInt32, false), Field::new("step", DataType::UInt64, false)];
    fields.extend(TEXT_COLUMNS.iter().map(|n| Field::new(*n, DataType::Utf8, false)));
    fields.push(Field::new("context_speakers", list(), false));
    fields.push(Field::new("context_texts", list(), false));
    fields.extend(REWARD_COLUMNS.iter().map(|n| Field::new(*n, DataType::Float64, !matches!(*n, "reward_format" | "reward_total"))));
    Schema::new(fields)
}

fn text_of(r: &FlywheelRow, column: &str) -> String {
    match column {
        "kind" => r.kind.name().into(),
        "source" => r.source.clone(),
        "speaker" => r.speaker.clone(),
        "turn" => r.turn.clone(),
        "label" => r.label.clone(),
        "prompt" => r.prompt.clone(),
        "completion" => r.completion.clone(),
        _ => r.prediction.clone(),
    }
}

fn reward_of(r: &FlywheelRow, column: &str) -> Option<f64> {
    match column {
        "reward_format" => Some(r.reward_format),
        "reward_recognition" => r.reward_recognition,
        "reward_expression" => r.reward_expression,
        "reward_consistency" => r.reward_consistency,
        _ => Some(r.reward_total),
    }
}

/// Writes `rows` to `path` (zstd Parquet), atomically.
pub fn write(path: &Path, rows: &[FlywheelRow]) -> Result<()> {
    let err = |m: String| DataError::in_file(path, m);
    let mut columns: Vec<ArrayRef> =
        vec![Arc::new(rows.iter().map(|r| r.iteration).collect::<UInt32Array>()), Arc::new(rows.iter().map(|r| r.step).collect::<UInt64Array>())];
    columns.extend(TEXT_COLUMNS.iter().map(|c| Arc::new(rows.iter().map(|r| Some(text_of(r, c))).collect::<StringArray>()) as ArrayRef));
    for field in [|u: &Utterance| u.speaker.clone(), |u: &Utterance| u.text.clone()] {
        let mut list = ListBuilder::new(StringBuilder::new());
        for r in rows {
            for u in &r.context {
                list.values().append_value(field(u));
            }
            list.append(true);
        }
        columns.push(Arc::new(list.finish()));
    }
    columns.extend(REWARD_COLUMNS.iter().map(|c| Arc::new(rows.iter().map(|r| reward_of(r, c)).collect::<Float64Array>()) as ArrayRef));
    let batch = RecordBatch::try_new(Arc::new(schema()), columns).map_err(|e| err(format!("cannot build the table: {e}")))?;
    selfemo_datasets::unified::write_parquet(path, &batch)
}

/// Reads a flywheel file back; errors name the file, and the row and column at fault.
#[allow(clippy::needless_range_loop)] // row i is read from every column
pub fn read(path: &Path) -> Result<Vec<FlywheelRow>> {
    let err = |m: String| DataError::in_file(path, m);
    let file = std::fs::File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).and_then(|b| b.build()).map_err(|e| err(format!("not a readable Parquet file: {e}")))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| err(format!("cannot read a row group: {e}")))?;
        let typed = |name: &str| batch.column_by_name(name).ok_or_else(|| err(format!("missing column `{name}`")));
        let iteration = typed("iteration")?.as_any().downcast_ref::<UInt32Array>().ok_or_else(|| err("column `iteration` is not uint32".into()))?;
        let step = typed("step")?.as_any().downcast_ref::<UInt64Array>().ok_or_else(|| err("column `step` is not uint64".into()))?;
        let texts: Vec<Vec<Option<&str>>> = TEXT_COLUMNS.iter().map(|c| strings(&batch, c, path)).collect::<Result<_>>()?;
        let lists: Vec<&ListArray> = ["context_speakers", "context_texts"]
            .iter()
            .map(|c| typed(c)?.as_any().downcast_ref::<ListArray>().ok_or_else(|| err(format!("column `{c}` is not a list of utf8"))))
            .collect::<Result<_>>()?;
        let rewards: Vec<&Float64Array> = REWARD_COLUMNS
            .iter()
            .map(|c| typed(c)?.as_any().downcast_ref::<Float64Array>().ok_or_else(|| err(format!("column `{c}` is not float64"))))
            .collect::<Result<_>>()?;
        for i in 0..batch.num_rows() {
            let at = |m: String| DataError::in_file(path, format!("row {}: {m}", rows.len() + 1));
            let text = |c: usize| texts[c][i].map(str::to_string).ok_or_else(|| at(format!("`{}` is null", TEXT_COLUMNS[c])));
            let kind = match text(0)?.as_str() {
                "recognition" => Kind::Recognition,
                "synthetic" => Kind::Synthetic,
                other => return Err(at(format!("kind {other:?} is neither recognition nor synthetic"))),
            };
            let list = |c: usize| -> Result<Vec<String>> {
                let values = lists[c].value(i);
                let values = values.as_any().downcast_ref::<StringArray>().ok_or_else(|| at("context lists must hold utf8".into()))?;
                Ok(values.iter().map(|v| v.unwrap_or("").to_string()).collect())
            };
            let (speakers, turns) = (list(0)?, list(1)?);
            if speakers.len() != turns.len() {
                return Err(at("context_speakers and context_texts differ in length".into()));
            }
            let reward = |c: usize| (!rewards[c].is_null(i)).then(|| rewards[c].value(i));
            rows.push(FlywheelRow {
                iteration: iteration.value(i),
                step: step.value(i),
                kind,
                source: text(1)?,
                context: speakers.into_iter().zip(turns).map(|(speaker, text)| Utterance { speaker, text, label: None }).collect(),
                speaker: text(2)?,
                turn: text(3)?,
                label: text(4)?,
                prompt: text(5)?,
                completion: text(6)?,
                prediction: text(7)?,
                reward_format: reward(0).ok_or_else(|| at("`reward_format` is null".into()))?,
                reward_recognition: reward(1),
                reward_expression: reward(2),
                reward_consistency: reward(3),
                reward_total: reward(4).ok_or_else(|| at("`reward_total` is null".into()))?,
            });
        }
    }
    Ok(rows)
}
