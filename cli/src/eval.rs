//! `selfemo eval`: recognition scores of a model on dataset splits, by greedy generation
//! (strict parsing) or by label scoring (one forward pass per target, shared dialogue prefixes).

use crate::ranks::progress_bar;
use anyhow::{Context, Result};
use clap::Args;
use selfemo_datasets::{ContextSpan, Corpus, Dataset, Split, Target, WindowAnchor};
use selfemo_eval::label_scoring::{ScoreLimits, ScorePrompt, score_targets};
use selfemo_eval::predictions::{self, Prediction, report_of};
use selfemo_eval::recognition::{evaluate, label_scores, prompts, score_predictions};
use selfemo_model::{LoadOptions, LoadedModel, ModelSource, parse_device};
use selfemo_selfplay::RecogniserPrompt;
use selfemo_trainer::collective::{Collective, this_rank_device};
use selfemo_trainer::config::RunConfig;
use selfemo_trainer::evaluation::predict_on_ranks;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How a prediction is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Greedy generation under the output contract, parsed strictly.
    Generate,
    /// The label with the highest log-prob after `<answer>` (one pass per target).
    Score,
}

/// A `--context-anchor` value, by the name the config file uses (`data.context_anchor`).
fn parse_anchor(s: &str) -> Result<WindowAnchor, String> {
    use serde::Deserialize;
    use serde::de::value::{Error, StrDeserializer};
    WindowAnchor::deserialize(StrDeserializer::<Error>::new(s)).map_err(|e| e.to_string())
}

/// What every evaluation reads: the model and the targets of some dataset splits.
#[derive(Args)]
pub struct TargetArgs {
    /// `default`, a .gguf file, or an HF folder (a run's `final/`).
    #[arg(long, default_value = "default")]
    pub model: String,
    /// Comma-separated datasets.
    #[arg(long, value_delimiter = ',', value_parser = crate::data::parse_dataset, default_value = "meld")]
    pub dataset: Vec<Dataset>,
    /// IEMOCAP folder, when iemocap is listed.
    #[arg(long)]
    pub iemocap: Option<PathBuf>,
    /// train, dev or test.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// First n targets only (0 = all).
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
    /// Past turns shown with the target (default: the run's with --prompt-from, else 20, InstructERC's).
    #[arg(long)]
    pub context_window: Option<usize>,
    /// Where a target's window starts: sliding, or block (w to 2w − 1 past turns, a block's
    /// targets sharing their lines) (default: the run's with --prompt-from, else sliding).
    #[arg(long, value_parser = parse_anchor)]
    pub context_anchor: Option<WindowAnchor>,
    /// Prompt token budget (default: the run's with --prompt-from, else 512).
    #[arg(long)]
    pub max_prompt_tokens: Option<usize>,
    /// cpu, cuda[:i] or wgpu.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// How an evaluation builds its prompts ([`TargetArgs::prompt_setup`]).
pub(crate) struct PromptSetup {
    /// The run config the prompts come from, if any.
    pub(crate) run: Option<RunConfig>,
    /// The recogniser template.
    pub(crate) template: RecogniserPrompt,
    /// Past turns shown.
    pub(crate) window: ContextSpan,
    /// Prompt token budget.
    pub(crate) budget: usize,
}

impl TargetArgs {
    /// The prompts' setup: the run config of `prompt_from` (when given), its recogniser
    /// template (else the default one), and the context window, its anchor and the token budget
    /// (given ones, else the run's, else 20, sliding and 512).
    pub(crate) fn prompt_setup(&self, prompt_from: Option<&Path>) -> Result<PromptSetup> {
        let run = prompt_from.map(run_config).transpose()?;
        let template = run.as_ref().map_or_else(RecogniserPrompt::default, |r| r.prompt.clone());
        let turns = self.context_window.or(run.as_ref().map(|r| r.data.context_window)).unwrap_or(20);
        let anchor = self.context_anchor.or(run.as_ref().map(|r| r.data.context_anchor)).unwrap_or_default();
        let window = ContextSpan { turns, anchor };
        let budget = self.max_prompt_tokens.or(run.as_ref().map(|r| r.data.max_prompt_tokens)).unwrap_or(512);
        Ok(PromptSetup { run, template, window, budget })
    }

    /// The model, on the chosen device (a bare `cuda` under an MPI launcher: each rank its own GPU).
    pub(crate) fn load_model(&self, ranks: &dyn Collective) -> Result<LoadedModel> {
        let device = parse_device(&this_rank_device(&self.device, ranks)).map_err(anyhow::Error::msg)?;
        LoadedModel::load(&ModelSource::parse(&self.model), LoadOptions::default(), &device).context("loading the model")
    }

    /// Each dataset's corpus and its (limited) targets of the chosen split.
    pub(crate) fn datasets(&self) -> Result<Vec<(Corpus, Vec<Target>)>> {
        let split = Split::from_name(&self.split).with_context(|| format!("unknown split {:?}", self.split))?;
        self.dataset
            .iter()
            .map(|d| {
                let path = if *d == Dataset::Iemocap { self.iemocap.as_deref() } else { None };
                let corpus = selfemo_datasets::load(*d, path)?;
                let mut targets = corpus.targets(split);
                if self.limit > 0 {
                    targets.truncate(self.limit);
                }
                Ok((corpus, targets))
            })
            .collect()
    }
}

/// Options of `selfemo eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// Model and targets.
    #[command(flatten)]
    pub targets: TargetArgs,
    /// generate (greedy, strict parse) or score (label log-probs).
    #[arg(long, value_enum, default_value = "generate")]
    pub mode: Mode,
    /// Rows per batch (generate: prompts; score: targets branching off one prefix).
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Greedy tokens per answer.
    #[arg(long, default_value_t = 48)]
    pub max_new_tokens: usize,
    /// A run config whose [prompt] templates, context window and token budget to use (else the
    /// defaults); score mode then scores the labels after exactly the run's prompts.
    #[arg(long)]
    pub prompt_from: Option<PathBuf>,
    /// JSON report.
    #[arg(long, default_value = "eval.json")]
    pub out: PathBuf,
}

/// Evaluates and prints a table per dataset and the mean. Started by an MPI launcher, each
/// rank predicts its share of the targets and rank 0 prints and writes the reports.
pub fn run(args: EvalArgs) -> Result<()> {
    let t = &args.targets;
    let PromptSetup { run, template, window, budget } = t.prompt_setup(args.prompt_from.as_deref())?;
    let ranks = crate::ranks::ranks()?;
    let main = ranks.is_main();
    let m = t.load_model(ranks.as_ref())?;
    let mut reports = serde_json::Map::new();
    let (mut acc, mut wf1) = (Vec::new(), Vec::new());
    if main {
        println!("{:<10} {:>8} {:>10} {:>10} {:>9} {:>8}", "dataset", "targets", "accuracy", "W-F1", "macro-F1", "invalid");
    }
    for (corpus, targets) in t.datasets()? {
        let d = corpus.dataset;
        let started = Instant::now();
        let bar = progress_bar(ranks.as_ref(), d.name(), targets.len());
        let predict = |targets: &[Target]| -> Vec<Prediction> {
            match args.mode {
                Mode::Generate => {
                    let ps = prompts(&corpus, targets, &template, window, budget, &m.tokenizer);
                    evaluate(&m.model, &m.tokenizer, &ps, &corpus, args.max_new_tokens, args.batch, &mut |k| bar.inc(k as u64)).1
                }
                Mode::Score => match &run {
                    Some(run) => {
                        let ps = prompts(&corpus, targets, &run.score_template(), window, budget, &m.tokenizer);
                        let scores = label_scores(&m.model, &m.tokenizer, &ps, d.labels(), args.batch, &mut |k| bar.inc(k as u64));
                        score_predictions(&ps, scores, d.labels())
                    }
                    None => {
                        let limits = ScoreLimits { window, budget, rows: args.batch };
                        let scores = score_targets(&m.model, &m.tokenizer, &ScorePrompt::default(), &corpus, targets, limits, &mut |k| bar.inc(k as u64));
                        dialogue_score_predictions(&corpus, targets, scores)
                    }
                },
            }
        };
        let predicted = predict_on_ranks(ranks.as_ref(), d.labels(), &targets, predict);
        bar.finish_and_clear();
        if !main {
            continue;
        }
        let (r, n) = (report_of(&predicted, d.labels()), predicted.len());
        predictions::write(&predictions::path_beside(&args.out, d.name()), &corpus, &predicted)?;
        let seconds = started.elapsed().as_secs_f64();
        eprintln!("{}: {n} targets in {seconds:.1} s ({:.2} targets/s) on {} rank(s)", d.name(), n as f64 / seconds.max(1e-9), ranks.size());
        println!("{:<10} {:>8} {:>10.4} {:>10.4} {:>9.4} {:>8.3}", d.name(), n, r.accuracy, r.weighted_f1, r.macro_f1, r.invalid_rate);
        acc.push(r.accuracy);
        wf1.push(r.weighted_f1);
        let png = args.out.with_file_name(format!("{}-confusion-{}.png", stem(&args.out), d.name()));
        let labels: Vec<String> = r.per_class.iter().map(|c| c.label.clone()).collect();
        let title = format!("{} {} ({} mode): W-F1 {:.3}", d.name(), t.split, format!("{:?}", args.mode).to_lowercase(), r.weighted_f1);
        // Unparseable answers get their own column: per gold class, support less the row's predictions.
        let (mut columns, mut counts) = (labels.clone(), r.confusion.clone());
        if r.invalid_rate > 0.0 {
            columns.push("invalid".into());
            for (row, class) in counts.iter_mut().zip(&r.per_class) {
                row.push(class.support.saturating_sub(row.iter().sum::<usize>()));
            }
        }
        selfemo_eval::plots::confusion_chart(&png, &title, &labels, &columns, &counts)?;
        let mut value = serde_json::to_value(&r)?;
        value["targets"] = n.into();
        value["seconds"] = seconds.into();
        reports.insert(d.name().to_string(), value);
    }
    if !main {
        return Ok(());
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    if t.dataset.len() > 1 {
        println!("{:<10} {:>8} {:>10.4} {:>10.4}", "mean", "", mean(&acc), mean(&wf1));
    }
    reports.insert("mean".into(), serde_json::json!({ "accuracy": mean(&acc), "weighted_f1": mean(&wf1) }));
    crate::ranks::write_reports(ranks.as_ref(), &args.out, &reports)
}

/// A run config (`--prompt-from`).
pub(crate) fn run_config(path: &std::path::Path) -> Result<RunConfig> {
    RunConfig::load(path).map_err(anyhow::Error::msg)
}

/// Default score-mode predictions: each target's argmax label (never invalid), with the label log-probs.
fn dialogue_score_predictions(corpus: &Corpus, targets: &[Target], scores: Vec<Vec<f64>>) -> Vec<Prediction> {
    let labels = corpus.dataset.labels();
    targets
        .iter()
        .zip(scores)
        .filter_map(|(t, s)| {
            let gold = corpus.dialogues[t.dialogue].utterances[t.turn].label?;
            Some(Prediction { target: *t, gold, predicted: labels.argmax(&s), completion: None, label_logprobs: Some(s) })
        })
        .collect()
}

/// The report file's name without its extension (`eval` for `eval.json`).
fn stem(path: &std::path::Path) -> String {
    path.file_stem().map_or_else(|| "eval".into(), |s| s.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_anchor_flags_take_the_config_names() {
        assert_eq!(parse_anchor("block"), Ok(WindowAnchor::Block));
        assert_eq!(parse_anchor("sliding"), Ok(WindowAnchor::Sliding));
        let e = parse_anchor("diagonal").unwrap_err();
        assert!(e.contains("sliding") && e.contains("block"), "{e}");
    }
}
