//! The run folder's files besides checkpoints: JSON and JSON-lines records (written to a
//! temporary name and renamed), the flywheel rows read back on resume, the iteration summaries,
//! and the PNG plots.

use crate::error::{AtPath, Result};
use crate::evaluation::Evaluation;
use crate::metrics_log::Row;
use crate::self_play::{IterationSummary, counts_from_metrics};
use selfemo_eval::plots::{Series, line_chart};
use selfemo_rewards::advantage::mean_std;
use selfemo_selfplay::{Flywheel, FlywheelRow, store};
use serde::Serialize;
use std::io::Write;
use std::path::Path;

/// Reads a JSON file, naming it in errors.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    serde_json::from_slice(&std::fs::read(path).at(path)?).at(path)
}

/// Writes `value` as pretty JSON, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).at(path)?;
    write_file(path, &bytes)
}

/// Writes one JSON value per line, atomically.
pub fn write_json_lines(path: &Path, lines: impl Iterator<Item = serde_json::Value>) -> Result<()> {
    let text: String = lines.map(|l| format!("{l}\n")).collect();
    write_file(path, text.as_bytes())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).at(dir)?;
    }
    selfemo_datasets::atomic::write_atomically(path, |f| f.write_all(bytes)).at(path)
}

/// The rows kept by steps ≤ `upto` in every `iter-<k>/flywheel.parquet` of the run, in order.
pub fn read_flywheel(run_dir: &Path, upto: u64) -> Result<Vec<FlywheelRow>> {
    let mut rows = Vec::new();
    for k in 1.. {
        let path = run_dir.join(format!("iter-{k}/flywheel.parquet"));
        if !path.is_file() {
            break;
        }
        rows.extend(store::read(&path)?.into_iter().filter(|r| r.step <= upto));
    }
    Ok(rows)
}

/// A mean for a log line: three decimals, or `–` when there is none.
pub fn shown(mean: Option<f64>) -> String {
    mean.map_or_else(|| "–".to_string(), |m| format!("{m:.3}"))
}

/// Iteration `k`'s summary from its metric rows, its flywheel rows and its dev evaluation.
pub fn summarise(k: u32, rows: &[Row], flywheel: &Flywheel, steps: (u64, u64), dev: crate::evaluation::DevResult) -> IterationSummary {
    let mine: Vec<&Row> = rows.iter().filter(|r| (steps.0..=steps.1).contains(&r.step)).collect();
    let mean = |key: &str| {
        let v: Vec<f64> = mine.iter().filter_map(|r| r.values.get(key).copied()).collect();
        Some(mean_std(&v).0).filter(|m| !v.is_empty() && m.is_finite())
    };
    IterationSummary {
        iteration: k,
        steps,
        kept: counts_from_metrics(mine.iter().map(|r| &r.values)),
        flywheel_rows: flywheel.iteration_rows(k).len(),
        synthetic_prompts: mine.iter().map(|r| r.values.get("selfplay/synthetic_prompts").copied().unwrap_or(0.0) as usize).sum(),
        reward_recogniser: mean("reward/recogniser"),
        reward_responder: mean("reward/responder"),
        expression: mean("rewards/expression/mean"),
        dev,
    }
}

/// One line per run of a dev score against minutes of training, written to `path`: the
/// runs of an ablation on one chart. `runs` pairs a legend name with its dev curve.
pub fn plot_dev_comparison(path: &Path, metric: DevMetric, runs: &[(String, Vec<Evaluation>)]) -> Result<()> {
    let series: Vec<Series> = runs
        .iter()
        .map(|(name, curve)| Series { name: name.clone(), points: curve.iter().map(|e| (e.train_seconds / 60.0, metric.of(&e.dev.report))).collect() })
        .collect();
    line_chart(path, &format!("dev {} against training time", metric.name()), "minutes of training", &series)?;
    Ok(())
}

/// A dev score a comparison chart plots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevMetric {
    /// Accuracy.
    Accuracy,
    /// Weighted F1.
    WeightedF1,
    /// Macro F1.
    MacroF1,
}

impl std::str::FromStr for DevMetric {
    type Err = String;
    /// `accuracy`, `weighted-f1` or `macro-f1` (the command line's names).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s {
            "accuracy" => Self::Accuracy,
            "weighted-f1" => Self::WeightedF1,
            "macro-f1" => Self::MacroF1,
            other => return Err(format!("unknown metric {other:?} (accuracy, weighted-f1, macro-f1)")),
        })
    }
}

impl DevMetric {
    /// The metric's name on the chart.
    pub fn name(self) -> &'static str {
        match self {
            Self::Accuracy => "accuracy",
            Self::WeightedF1 => "weighted F1",
            Self::MacroF1 => "macro F1",
        }
    }

    /// Its value in `report`.
    pub fn of(self, report: &selfemo_eval::scores::Report) -> f64 {
        match self {
            Self::Accuracy => report.accuracy,
            Self::WeightedF1 => report.weighted_f1,
            Self::MacroF1 => report.macro_f1,
        }
    }
}

/// Dev accuracy, weighted and macro F1 against minutes of training (`plots/dev_curve.png`),
/// and the flywheel's kept counts per iteration (`plots/flywheel.png`, when there are any).
pub fn plot_progress(run_dir: &Path, curve: &[Evaluation], iterations: &[IterationSummary]) -> Result<()> {
    let dir = run_dir.join("plots");
    std::fs::create_dir_all(&dir).at(&dir)?;
    let dev = |name: &str, f: &dyn Fn(&Evaluation) -> f64| Series { name: name.into(), points: curve.iter().map(|e| (e.train_seconds / 60.0, f(e))).collect() };
    let scores = [
        dev("accuracy", &|e| e.dev.report.accuracy),
        dev("weighted F1", &|e| e.dev.report.weighted_f1),
        dev("macro F1", &|e| e.dev.report.macro_f1),
        dev("top prediction share", &|e| e.dev.report.top_prediction_share),
    ];
    line_chart(&dir.join("dev_curve.png"), "dev scores against training time", "minutes of training", &scores)?;
    if iterations.is_empty() {
        return Ok(());
    }
    let kept = |name: &str, f: &dyn Fn(&IterationSummary) -> usize| Series {
        name: name.into(),
        points: iterations.iter().map(|s| (f64::from(s.iteration), f(s) as f64)).collect(),
    };
    line_chart(
        &dir.join("flywheel.png"),
        "flywheel rows kept per iteration",
        "iteration",
        &[kept("recognition", &|s| s.kept.kept_recognition), kept("synthetic", &|s| s.kept.kept_synthetic), kept("duplicates", &|s| s.kept.duplicates)],
    )?;
    Ok(())
}

/// PNG curves of the self-play steps in `plots/`: reward (with its components), KL and loss.
pub fn plot_steps(run_dir: &Path, rows: &[Row]) -> Result<()> {
    let dir = run_dir.join("plots");
    std::fs::create_dir_all(&dir).at(&dir)?;
    let series =
        |name: &str, key: &str| Series { name: name.into(), points: rows.iter().filter_map(|r| r.values.get(key).map(|v| (r.step as f64, *v))).collect() };
    let mut rewards = vec![series("reward", "reward")];
    let components: std::collections::BTreeSet<&String> = rows.iter().flat_map(|r| r.values.keys()).filter(|k| k.starts_with("rewards/")).collect();
    rewards.extend(components.into_iter().map(|k| series(k.trim_start_matches("rewards/").trim_end_matches("/mean"), k)));
    line_chart(&dir.join("reward.png"), "reward per step", "step", &rewards)?;
    line_chart(&dir.join("kl.png"), "KL to the reference per step", "step", &[series("kl", "kl")])?;
    line_chart(&dir.join("loss.png"), "loss per step", "step", &[series("loss", "loss")])?;
    Ok(())
}
