//! How a run is evaluated. Dev: a stratified sample of the dev split (or all of it), scored
//! after every stage (the warm start's checkpoints, each self-play iteration) in score mode by
//! default, each evaluation recorded on the dev curve with the training time spent so far; the
//! best-dev model is kept in `best/`. Test: the best-dev model on the test split in every
//! configured mode, with an optional logit adjustment fitted on the best stage's dev scores.
//! Every evaluation writes its per-target predictions beside its report.

use crate::collective::{Collective, map_shares};
use crate::config::RunConfig;
use crate::error::{AtPath, Result};
use crate::run_dir::write_json;
use crate::session::Session;
use burn::module::Module;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use selfemo_datasets::{Corpus, Emotion, LabelSet, Target};
use selfemo_eval::calibration::LogitAdjustment;
use selfemo_eval::predictions::{self, Prediction, report_of};
use selfemo_eval::recognition::{dev_reward, evaluate, label_scores, prompts, score_predictions};
use selfemo_eval::scores::Report;
use selfemo_model::{CausalLm, LoadOptions, LoadedModel, ModelSource, TextTokenizer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// How a recogniser's answers are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvalMode {
    /// The label with the highest log-prob after the run's prompt (one pass; never invalid).
    Score,
    /// Greedy generation under the output contract, parsed strictly.
    Generate,
}

impl EvalMode {
    /// The name in file names and reports.
    pub fn name(self) -> &'static str {
        match self {
            EvalMode::Score => "score",
            EvalMode::Generate => "generate",
        }
    }
}

/// `limit` of `targets` (all of them when `limit` is 0 or larger), each label's share kept
/// (largest remainders), drawn by a seeded shuffle and returned in corpus order.
pub fn stratified(corpus: &Corpus, mut targets: Vec<Target>, limit: usize, seed: u64) -> Vec<Target> {
    if limit == 0 || limit >= targets.len() {
        return targets;
    }
    let label = |t: &Target| corpus.dialogues[t.dialogue].utterances[t.turn].label.map(|e| e.name());
    targets.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    let mut classes: Vec<(Option<&str>, Vec<Target>)> = Vec::new();
    for t in targets.iter() {
        match classes.iter_mut().find(|(l, _)| *l == label(t)) {
            Some((_, v)) => v.push(*t),
            None => classes.push((label(t), vec![*t])),
        }
    }
    let n = targets.len();
    let exact: Vec<f64> = classes.iter().map(|(_, v)| (limit * v.len()) as f64 / n as f64).collect();
    let mut quota: Vec<usize> = exact.iter().map(|q| q.floor() as usize).collect();
    let mut order: Vec<usize> = (0..classes.len()).collect();
    order.sort_by(|a, b| (exact[*b] - quota[*b] as f64).total_cmp(&(exact[*a] - quota[*a] as f64)).then(a.cmp(b)));
    for c in order.into_iter().take(limit - quota.iter().sum::<usize>()) {
        quota[c] += 1;
    }
    let mut out: Vec<Target> = classes.iter().zip(&quota).flat_map(|((_, v), q)| v[..*q].iter().copied()).collect();
    out.sort_by_key(|t| (t.dialogue, t.turn));
    out
}

/// A prediction as it travels between ranks: its target (dialogue, turn), gold and predicted
/// label by index in the label set, the completion, the label log-probs.
type WirePrediction = (usize, usize, usize, Option<usize>, Option<String>, Option<Vec<f64>>);

/// `predict` of this rank's [`share`](crate::collective::share) of `targets`, every rank's
/// predictions gathered in target order: on N ranks the predictions one process makes, each
/// rank running 1/N of them.
pub fn predict_on_ranks(c: &dyn Collective, labels: &LabelSet, targets: &[Target], predict: impl FnOnce(&[Target]) -> Vec<Prediction>) -> Vec<Prediction> {
    let index = |e: Emotion| labels.index(e).expect("predictions are of the evaluated label set");
    let label = |i: usize| labels.get(i).expect("every rank indexes the same label set");
    map_shares(c, targets, |mine| {
        predict(mine).into_iter().map(|p| (p.target.dialogue, p.target.turn, index(p.gold), p.predicted.map(index), p.completion, p.label_logprobs)).collect()
    })
    .into_iter()
    .map(|(dialogue, turn, gold, predicted, completion, label_logprobs): WirePrediction| Prediction {
        target: Target { dialogue, turn },
        gold: label(gold),
        predicted: predicted.map(label),
        completion,
        label_logprobs,
    })
    .collect()
}

/// One dev evaluation's scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DevResult {
    /// How the answers were read.
    pub mode: EvalMode,
    /// Accuracy, F1 and the rest.
    pub report: Report,
    /// Generate mode: the mean of w_format · format + w_U · R_U over the greedy dev replies,
    /// the reward the policy is trained on less group consistency (one greedy reply has no group).
    pub reward: Option<f64>,
}

/// Scores models on a run's dev and test targets, with the run's own prompts; in a
/// data-parallel run each rank scores a contiguous share of the targets and every rank gets
/// every prediction.
pub struct Evaluator<'a> {
    config: &'a RunConfig,
    corpus: &'a Corpus,
    tok: &'a TextTokenizer,
    collective: &'a dyn Collective,
    /// The dev targets every dev evaluation scores.
    pub dev: Vec<Target>,
}

impl<'a> Evaluator<'a> {
    /// The evaluator of `config`'s dev sample of `corpus`, on the ranks of `collective`.
    pub fn new(config: &'a RunConfig, corpus: &'a Corpus, tok: &'a TextTokenizer, collective: &'a dyn Collective) -> Self {
        let dev = stratified(corpus, corpus.targets(selfemo_datasets::Split::Dev), config.eval.dev_limit, config.seed);
        Self { config, corpus, tok, collective, dev }
    }

    /// Each target's prediction by `model` in `mode`, from the run's prompts (score mode: its
    /// template with a reply prefix that ends where the label goes), this rank predicting its
    /// share and gathering the others' ([`predict_on_ranks`]).
    pub fn predict(&self, model: &CausalLm, targets: &[Target], mode: EvalMode) -> Vec<Prediction> {
        predict_on_ranks(self.collective, self.corpus.dataset.labels(), targets, |mine| self.predict_here(model, mine, mode))
    }

    fn predict_here(&self, model: &CausalLm, targets: &[Target], mode: EvalMode) -> Vec<Prediction> {
        let (c, labels) = (self.config, self.corpus.dataset.labels());
        let (w, budget) = (c.data.context_span(), c.data.max_prompt_tokens);
        match mode {
            EvalMode::Generate => {
                let ps = prompts(self.corpus, targets, &c.prompt, w, budget, self.tok);
                evaluate(model, self.tok, &ps, self.corpus, c.eval.max_new_tokens, c.eval.batch_size, &mut |_| ()).1
            }
            EvalMode::Score => {
                let ps = prompts(self.corpus, targets, &c.score_template(), w, budget, self.tok);
                score_predictions(&ps, label_scores(model, self.tok, &ps, labels, c.eval.batch_size, &mut |_| ()), labels)
            }
        }
    }

    /// The dev evaluation of `model`, its predictions written to `predictions_path` if given.
    pub fn dev(&self, model: &CausalLm, predictions_path: Option<&Path>) -> Result<DevResult> {
        let mode = self.config.eval.dev_mode;
        let predicted = self.predict(model, &self.dev, mode);
        if let Some(path) = predictions_path {
            predictions::write(path, self.corpus, &predicted)?;
        }
        let reward = (mode == EvalMode::Generate).then(|| dev_reward(&predicted, self.corpus, &self.config.rewards));
        Ok(DevResult { mode, report: report_of(&predicted, self.corpus.dataset.labels()), reward })
    }

    /// The test evaluation of `model` in every configured mode, each mode's predictions written
    /// in `run_dir` if given (`test-<mode>.predictions.parquet`); with a logit adjustment,
    /// score mode is also reported adjusted (`score_adjusted`). `None` when there are no test
    /// targets.
    pub fn test(&self, model: &CausalLm, run_dir: Option<&Path>, adjustment: Option<&LogitAdjustment>) -> Result<Option<BTreeMap<String, Report>>> {
        let mut targets = self.corpus.targets(selfemo_datasets::Split::Test);
        if self.config.eval.test_limit > 0 {
            targets.truncate(self.config.eval.test_limit);
        }
        if targets.is_empty() {
            return Ok(None);
        }
        let labels = self.corpus.dataset.labels();
        let mut reports = BTreeMap::new();
        for mode in &self.config.eval.test_modes {
            let predicted = self.predict(model, &targets, *mode);
            if let Some(dir) = run_dir {
                predictions::write(&dir.join(format!("test-{}.predictions.parquet", mode.name())), self.corpus, &predicted)?;
            }
            if let (EvalMode::Score, Some(a)) = (mode, adjustment) {
                let adjusted = a.apply(&predicted, labels);
                if let Some(dir) = run_dir {
                    predictions::write(&dir.join("test-score_adjusted.predictions.parquet"), self.corpus, &adjusted)?;
                }
                reports.insert("score_adjusted".to_string(), report_of(&adjusted, labels));
            }
            reports.insert(mode.name().to_string(), report_of(&predicted, labels));
        }
        Ok(Some(reports))
    }
}

/// One point of the dev curve: a stage's dev scores and the training time spent before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// `before`, `warm_start-<step>` or `iteration-<k>`: also the name of its predictions file.
    pub stage: String,
    /// GRPO steps done before it (0 through the warm start).
    pub step: u64,
    /// Seconds of training (SFT and self-play steps, no evaluation) before it.
    pub train_seconds: f64,
    /// Its dev scores.
    pub dev: DevResult,
}

/// The dev evaluations of the run folder `run_dir` (its `dev_curve.jsonl`), in order.
pub fn read_dev_curve(run_dir: &Path) -> Result<Vec<Evaluation>> {
    let path = run_dir.join("dev_curve.jsonl");
    let text = std::fs::read_to_string(&path).at(&path)?;
    let parsed: std::result::Result<Vec<Evaluation>, _> = text.lines().map(serde_json::from_str).collect();
    parsed.at(&path)
}

/// Every dev evaluation of a run, in order, as `dev_curve.jsonl`; `best/` holds the model of
/// the best one by dev weighted F1 (ties go to the later stage).
pub struct DevCurve {
    path: PathBuf,
    /// Whether this process writes the file and `best/` (rank 0 of a data-parallel run).
    writes: bool,
    /// The evaluations so far.
    pub entries: Vec<Evaluation>,
}

impl DevCurve {
    /// A fresh curve (`resumed_at` = `None`: the file is emptied), or the curve of a run
    /// resumed at GRPO step `s`: its evaluations up to step `s` (later ones are redone).
    /// `writes` = false keeps it in memory (the ranks of a data-parallel run but rank 0).
    pub fn open(run_dir: &Path, resumed_at: Option<u64>, writes: bool) -> Result<Self> {
        let path = run_dir.join("dev_curve.jsonl");
        let entries = match resumed_at {
            None => Vec::new(),
            Some(s) if path.is_file() => read_dev_curve(run_dir)?.into_iter().filter(|e| e.step <= s).collect(),
            Some(_) => Vec::new(),
        };
        let curve = Self { path, writes, entries };
        curve.save()?;
        Ok(curve)
    }

    fn save(&self) -> Result<()> {
        if !self.writes {
            return Ok(());
        }
        let mut text = String::new();
        for e in &self.entries {
            text.push_str(&serde_json::to_string(e).at(&self.path)?);
            text.push('\n');
        }
        selfemo_datasets::atomic::write_atomically(&self.path, |f| f.write_all(text.as_bytes())).at(&self.path)?;
        Ok(())
    }

    /// The best evaluation after training began (`before` never counts).
    pub fn best(&self) -> Option<&Evaluation> {
        self.entries.iter().filter(|e| e.stage != "before").fold(None, |best: Option<&Evaluation>, e| match best {
            Some(b) if b.dev.report.weighted_f1 > e.dev.report.weighted_f1 => Some(b),
            _ => Some(e),
        })
    }

    /// Appends `e`; when it is the new best, `export` writes its model to `best/` first (so the
    /// curve never names a best that `best/` does not hold).
    pub fn record(&mut self, e: Evaluation, export: impl FnOnce() -> Result<()>) -> Result<()> {
        let is_best = e.stage != "before" && self.best().is_none_or(|b| e.dev.report.weighted_f1 >= b.dev.report.weighted_f1);
        if is_best && self.writes {
            export()?;
        }
        self.entries.push(e);
        self.save()
    }
}

/// Test scores of the best-dev model (`test.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    /// Which evaluation's model (`warm_start-<step>`, `iteration-<k>`).
    pub stage: String,
    /// Per mode (`score`, `generate`, `score_adjusted`): accuracy, F1 and the rest.
    pub reports: BTreeMap<String, Report>,
    /// The logit adjustment fitted on that model's dev scores, when configured.
    pub logit_adjustment: Option<LogitAdjustment>,
}

/// Evaluates the best-dev model on the test split in every configured mode (the final model
/// when the last evaluation is the best, else the export in `best/`) and writes `test.json`;
/// `None` when the dataset has no test targets.
pub(crate) fn test_best(s: &Session, curve: &DevCurve, final_model: &CausalLm, device: &burn::tensor::Device) -> Result<Option<TestResult>> {
    let best = curve.best();
    let is_final = best.is_none() || best == curve.entries.last();
    let loaded;
    let model = if is_final {
        final_model
    } else {
        let dir = s.run_dir.join("best");
        loaded = LoadedModel::load(&ModelSource::HfDir(dir), LoadOptions::default(), device)?.model.valid();
        &loaded
    };
    let labels = s.corpus.dataset.labels();
    let adjustment = s.config.eval.logit_adjustment.then(|| LogitAdjustment::fit(&s.evaluator.predict(model, &s.evaluator.dev, EvalMode::Score), labels));
    let Some(reports) = s.evaluator.test(model, s.writes().then_some(s.run_dir), adjustment.as_ref())? else { return Ok(None) };
    let stage = best.map_or("final".to_string(), |b| b.stage.clone());
    for (mode, r) in &reports {
        s.log(&format!("test ({stage}, best dev; {mode}): {}", r.summary()))?;
    }
    let result = TestResult { stage, reports, logit_adjustment: adjustment };
    if s.writes() {
        write_json(&s.run_dir.join("test.json"), &result)?;
    }
    Ok(Some(result))
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfemo_datasets::{Dataset, Split};

    #[test]
    fn a_stratified_sample_keeps_each_labels_share() {
        let corpus = selfemo_datasets::load(Dataset::Meld, None).unwrap();
        let all = corpus.targets(Split::Dev);
        let sample = stratified(&corpus, all.clone(), 300, 4);
        assert_eq!(sample.len(), 300);
        let count = |ts: &[Target], l: &str| ts.iter().filter(|t| corpus.dialogues[t.dialogue].utterances[t.turn].label.unwrap().name() == l).count();
        for e in Dataset::Meld.labels().emotions() {
            let want = 300.0 * count(&all, e.name()) as f64 / all.len() as f64;
            assert!((count(&sample, e.name()) as f64 - want).abs() < 1.0, "{e}: {} vs {want}", count(&sample, e.name()));
        }
        assert!(sample.windows(2).all(|w| (w[0].dialogue, w[0].turn) < (w[1].dialogue, w[1].turn)), "corpus order");
        assert_eq!(stratified(&corpus, all.clone(), 300, 4), sample, "seeded");
        assert_ne!(stratified(&corpus, all.clone(), 300, 5), sample);
        assert_eq!(stratified(&corpus, all.clone(), 0, 4), all, "0 = the whole split");
    }
}
