//! What every phase of a run reads, and the three things each does with it: log a line,
//! export a model, evaluate on dev.

use crate::config::RunConfig;
use crate::error::{AtPath, Result};
use crate::evaluation::{DevCurve, DevResult, Evaluation, Evaluator};
use crate::run::Progress;
use selfemo_datasets::Corpus;
use selfemo_model::{CausalLm, LoadedModel, ModelConfig, TextTokenizer};
use std::cell::RefCell;
use std::io::Write;
use std::path::Path;

/// What every phase of a run reads.
pub(crate) struct Session<'a> {
    pub(crate) config: &'a RunConfig,
    pub(crate) corpus: &'a Corpus,
    pub(crate) tok: &'a TextTokenizer,
    pub(crate) model_config: &'a ModelConfig,
    pub(crate) run_dir: &'a Path,
    pub(crate) evaluator: Evaluator<'a>,
    pub(crate) events: RefCell<std::fs::File>,
    pub(crate) progress: Option<&'a dyn Progress>,
}

impl Session<'_> {
    /// A line in `events.log`, and for whoever watches.
    pub(crate) fn log(&self, line: &str) -> Result<()> {
        writeln!(self.events.borrow_mut(), "{line}").at(&self.run_dir.join("events.log"))?;
        if let Some(p) = self.progress {
            p.line(line);
        }
        Ok(())
    }

    /// An HF folder of `model`.
    pub(crate) fn export(&self, model: &CausalLm, dir: &Path) -> Result<()> {
        let loaded = LoadedModel { model: model.clone(), config: self.model_config.clone(), tokenizer: self.tok.clone() };
        loaded.export(dir).at(dir)
    }

    /// The dev evaluation of `model` at `stage`, after `step` GRPO steps and `train_seconds` of
    /// training: its predictions in `dev/<stage>.predictions.parquet`, a point on the curve,
    /// and `best/` when it is the best so far.
    pub(crate) fn evaluate(&self, curve: &mut DevCurve, model: &CausalLm, stage: &str, step: u64, train_seconds: f64) -> Result<DevResult> {
        let dev = self.evaluator.dev(model, &self.run_dir.join(format!("dev/{stage}.predictions.parquet")))?;
        let n = self.evaluator.dev.len();
        self.log(&format!("dev {stage} ({} mode, {n} targets, {:.1} min of training): {}", dev.mode.name(), train_seconds / 60.0, dev.report.summary()))?;
        let point = Evaluation { stage: stage.to_string(), step, train_seconds, dev: dev.clone() };
        curve.record(point, || self.export(model, &self.run_dir.join("best")))?;
        Ok(dev)
    }
}
