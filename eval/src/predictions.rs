//! Per-target predictions of an evaluation, written beside its JSON report as
//! `<name>.predictions.parquet`: dataset, dialogue id, turn, speaker, gold, prediction (null when
//! invalid), and the raw completion (generate mode) or every label's log-prob (score mode), so a
//! reader can recompute any score, or compare two runs target by target.

use crate::scores::{Report, report};
use arrow_array::builder::{Float64Builder, ListBuilder};
use arrow_array::{Array, ArrayRef, Float64Array, ListArray, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use selfemo_datasets::{Corpus, DataError, Emotion, LabelSet, Target};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One evaluated target.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Which utterance.
    pub target: Target,
    /// Its gold label.
    pub gold: Emotion,
    /// The predicted label; `None` when the answer was malformed or not exactly one valid label.
    pub predicted: Option<Emotion>,
    /// Generate mode: the reply (reply prefix + completion).
    pub completion: Option<String>,
    /// Score mode: log π(label | prompt) of every label, in label-set order.
    pub label_logprobs: Option<Vec<f64>>,
}

/// The scores of `predictions` (sklearn semantics; invalid answers count wrong).
pub fn report_of(predictions: &[Prediction], labels: &LabelSet) -> Report {
    let order: Vec<&str> = labels.emotions().map(|e| e.name()).collect();
    let gold: Vec<&str> = predictions.iter().map(|p| p.gold.name()).collect();
    let pred: Vec<Option<&str>> = predictions.iter().map(|p| p.predicted.map(|e| e.name())).collect();
    report(&gold, &pred, &order)
}

/// The predictions file of a dataset's part of a JSON report: `eval.json` and MELD →
/// `eval-meld.predictions.parquet`.
pub fn path_beside(report: &Path, dataset: &str) -> PathBuf {
    let stem = report.file_stem().map_or_else(|| "eval".into(), |s| s.to_string_lossy().into_owned());
    report.with_file_name(format!("{stem}-{dataset}.predictions.parquet"))
}

const TEXT: [&str; 6] = ["dataset", "dialogue_id", "speaker", "gold", "prediction", "completion"];

fn schema() -> Schema {
    let mut fields: Vec<Field> = TEXT.iter().map(|n| Field::new(*n, DataType::Utf8, matches!(*n, "prediction" | "completion"))).collect();
    fields.insert(2, Field::new("turn", DataType::UInt32, false));
    fields.push(Field::new("label_logprobs", DataType::List(Arc::new(Field::new("item", DataType::Float64, true))), true));
    Schema::new(fields)
}

/// Writes `predictions` of `corpus` targets to `path` (zstd Parquet), atomically.
pub fn write(path: &Path, corpus: &Corpus, predictions: &[Prediction]) -> selfemo_datasets::Result<()> {
    let text = |column: &str, p: &Prediction| -> Option<String> {
        let d = &corpus.dialogues[p.target.dialogue];
        match column {
            "dataset" => Some(corpus.dataset.name().to_string()),
            "dialogue_id" => Some(d.id.clone()),
            "speaker" => Some(d.utterances[p.target.turn].speaker.clone()),
            "gold" => Some(p.gold.name().to_string()),
            "prediction" => p.predicted.map(|e| e.name().to_string()),
            _ => p.completion.clone(),
        }
    };
    let mut columns: Vec<ArrayRef> = TEXT.iter().map(|c| Arc::new(predictions.iter().map(|p| text(c, p)).collect::<StringArray>()) as ArrayRef).collect();
    columns.insert(2, Arc::new(predictions.iter().map(|p| p.target.turn as u32).collect::<UInt32Array>()));
    let mut lists = ListBuilder::new(Float64Builder::new());
    for p in predictions {
        match &p.label_logprobs {
            Some(v) => {
                lists.values().append_slice(v);
                lists.append(true);
            }
            None => lists.append(false),
        }
    }
    columns.push(Arc::new(lists.finish()));
    let err = |m: String| DataError::in_file(path, m);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create its folder: {e}")))?;
    }
    let batch = RecordBatch::try_new(Arc::new(schema()), columns).map_err(|e| err(format!("cannot build the table: {e}")))?;
    selfemo_datasets::unified::write_parquet(path, &batch)
}

/// A row read back: the text columns by name, the turn, and the label log-probs.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionRow {
    /// `dataset`, `dialogue_id`, `speaker`, `gold`, `prediction`, `completion` (null → `None`).
    pub text: Vec<(String, Option<String>)>,
    /// Turn within the dialogue.
    pub turn: u32,
    /// Label log-probs (score mode).
    pub label_logprobs: Option<Vec<f64>>,
}

impl PredictionRow {
    /// The value of a text column.
    pub fn get(&self, column: &str) -> Option<&str> {
        self.text.iter().find(|(c, _)| c == column).and_then(|(_, v)| v.as_deref())
    }
}

/// Reads a predictions file back.
pub fn read(path: &Path) -> selfemo_datasets::Result<Vec<PredictionRow>> {
    let err = |m: String| DataError::in_file(path, m);
    let file = std::fs::File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).and_then(|b| b.build()).map_err(|e| err(format!("not a Parquet file: {e}")))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| err(format!("cannot read: {e}")))?;
        let column = |name: &str| batch.column_by_name(name).ok_or_else(|| err(format!("no column {name:?}")));
        let texts: Vec<&StringArray> = TEXT
            .iter()
            .map(|n| column(n)?.as_any().downcast_ref::<StringArray>().ok_or_else(|| err(format!("column {n:?} is not utf8"))))
            .collect::<Result<_, _>>()?;
        let turns = column("turn")?.as_any().downcast_ref::<UInt32Array>().ok_or_else(|| err("column \"turn\" is not uint32".into()))?;
        let lists = column("label_logprobs")?.as_any().downcast_ref::<ListArray>().ok_or_else(|| err("column \"label_logprobs\" is not a list".into()))?;
        for i in 0..batch.num_rows() {
            let text = TEXT.iter().zip(&texts).map(|(n, a)| (n.to_string(), a.is_valid(i).then(|| a.value(i).to_string()))).collect();
            let label_logprobs = lists.is_valid(i).then(|| {
                let values = lists.value(i);
                let f = values.as_any().downcast_ref::<Float64Array>().map(|a| a.values().to_vec());
                f.unwrap_or_default()
            });
            rows.push(PredictionRow { text, turn: turns.value(i), label_logprobs });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfemo_datasets::{Dataset, Dialogue, Split, Utterance};

    #[test]
    fn predictions_round_trip_and_score() {
        let meld = Dataset::Meld.labels();
        let e = |n: &str| meld.parse(n).unwrap();
        let u = |s: &str, l: &str| Utterance { speaker: s.into(), text: "x".into(), label: Some(e(l)) };
        let corpus = Corpus {
            dataset: Dataset::Meld,
            dialogues: vec![Dialogue { id: "d7".into(), split: Split::Test, utterances: vec![u("A", "joy"), u("B", "anger")] }],
        };
        let predictions = vec![
            Prediction {
                target: Target { dialogue: 0, turn: 0 },
                gold: e("joy"),
                predicted: Some(e("joy")),
                completion: Some("<answer>joy</answer>".into()),
                label_logprobs: None,
            },
            Prediction { target: Target { dialogue: 0, turn: 1 }, gold: e("anger"), predicted: None, completion: None, label_logprobs: Some(vec![-0.5, -2.0]) },
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = path_beside(&dir.path().join("test.json"), "meld");
        assert_eq!(path.file_name().unwrap(), "test-meld.predictions.parquet");
        write(&path, &corpus, &predictions).unwrap();
        let back = read(&path).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!((back[0].get("dialogue_id"), back[0].get("speaker"), back[0].turn), (Some("d7"), Some("A"), 0));
        assert_eq!((back[0].get("prediction"), back[0].get("completion")), (Some("joy"), Some("<answer>joy</answer>")));
        assert_eq!((back[1].get("prediction"), back[1].label_logprobs.clone()), (None, Some(vec![-0.5, -2.0])));
        let r = report_of(&predictions, meld);
        assert_eq!((r.accuracy, r.invalid_rate), (0.5, 0.5));
    }
}
