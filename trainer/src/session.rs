//! What every phase of a run reads, and the three things each does with it: log a line,
//! export a model, evaluate on dev.

use crate::collective::Collective;
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
    /// `events.log` on rank 0; `None` on the other ranks, which write nothing.
    pub(crate) events: RefCell<Option<std::fs::File>>,
    pub(crate) progress: Option<&'a dyn Progress>,
    pub(crate) collective: &'a dyn Collective,
}

impl Session<'_> {
    /// Whether this rank writes the run folder (rank 0; the only rank of a one-process run).
    pub(crate) fn writes(&self) -> bool {
        self.collective.is_main()
    }

    /// A line in `events.log`, and for whoever watches.
    pub(crate) fn log(&self, line: &str) -> Result<()> {
        self.event(line)?;
        if let Some(p) = self.progress {
            p.line(line);
        }
        Ok(())
    }

    /// A line in `events.log` only.
    pub(crate) fn event(&self, line: &str) -> Result<()> {
        match self.events.borrow_mut().as_mut() {
            Some(f) => writeln!(f, "{line}").at(&self.run_dir.join("events.log")),
            None => Ok(()),
        }
    }

    /// An HF folder of `model` (rank 0 only).
    pub(crate) fn export(&self, model: &CausalLm, dir: &Path) -> Result<()> {
        if !self.writes() {
            return Ok(());
        }
        let loaded = LoadedModel { model: model.clone(), config: self.model_config.clone(), tokenizer: self.tok.clone() };
        loaded.export(dir).at(dir)
    }

    /// The dev evaluation of `model` at `stage`, after `step` GRPO steps and `train_seconds` of
    /// training: its predictions in `dev/<stage>.predictions.parquet`, a point on the curve,
    /// and `best/` when it is the best so far.
    pub(crate) fn evaluate(&self, curve: &mut DevCurve, model: &CausalLm, stage: &str, step: u64, train_seconds: f64) -> Result<DevResult> {
        let predictions = self.writes().then(|| self.run_dir.join(format!("dev/{stage}.predictions.parquet")));
        let dev = self.evaluator.dev(model, predictions.as_deref())?;
        let n = self.evaluator.dev.len();
        self.log(&format!("dev {stage} ({} mode, {n} targets, {:.1} min of training): {}", dev.mode.name(), train_seconds / 60.0, dev.report.summary()))?;
        let point = Evaluation { stage: stage.to_string(), step, train_seconds, dev: dev.clone() };
        curve.record(point, || self.export(model, &self.run_dir.join("best")))?;
        Ok(dev)
    }
}
