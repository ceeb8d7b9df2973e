//! `selfemo probe`: a model's emotion judgements beyond accuracy. `hallucination` asks two
//! yes/no questions per target (EmotionHallucer); `faithfulness` judges each rationale (ERV).
//! Started by an MPI launcher, each rank probes its share of the targets and rank 0 prints and
//! writes the reports.

use crate::eval::{PromptSetup, TargetArgs};
use crate::ranks::progress_bar;
use anyhow::Result;
use clap::Args;
use selfemo_trainer::collective::map_shares;
use std::path::PathBuf;
use std::time::Instant;

/// Options of `selfemo probe hallucination`.
#[derive(Args)]
pub struct ProbeArgs {
    /// Model and targets.
    #[command(flatten)]
    pub targets: TargetArgs,
    /// Questions per tree pass.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// JSON report.
    #[arg(long, default_value = "hallucination.json")]
    pub out: PathBuf,
}

/// The hallucination probe per dataset: a table and a JSON report.
pub fn hallucination(args: ProbeArgs) -> Result<()> {
    use selfemo_eval::hallucination::{PairAnswer, probe, report};
    use selfemo_eval::label_scoring::ScoreLimits;
    let t = &args.targets;
    let PromptSetup { window, budget, .. } = t.prompt_setup(None)?;
    let ranks = crate::ranks::ranks()?;
    let m = t.load_model(ranks.as_ref())?;
    let mut reports = serde_json::Map::new();
    if ranks.is_main() {
        println!("{:<10} {:>6} {:>7} {:>13} {:>6} {:>9} {:>6}", "dataset", "pairs", "basic", "hallucinated", "pair", "yes-bias", "r_fp");
    }
    for (corpus, targets) in t.datasets()? {
        let d = corpus.dataset;
        let started = Instant::now();
        let bar = progress_bar(ranks.as_ref(), d.name(), targets.len());
        let answers: Vec<PairAnswer> = map_shares(ranks.as_ref(), &targets, |mine| {
            let limits = ScoreLimits { window, budget, rows: args.batch };
            probe(&m.model, &m.tokenizer, &corpus, mine, limits, &mut |k| bar.inc(k as u64)).into_iter().map(|a| (a.gold, a.confusable)).collect()
        })
        .into_iter()
        .map(|(gold, confusable)| PairAnswer { gold, confusable })
        .collect();
        bar.finish_and_clear();
        if !ranks.is_main() {
            continue;
        }
        let r = report(&answers);
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "{:<10} {:>6} {:>7.4} {:>13.4} {:>6.4} {:>9.4} {:>6.4}",
            d.name(),
            r.pairs,
            r.basic_accuracy,
            r.hallucinated_accuracy,
            r.pair_accuracy,
            r.yes_bias,
            r.false_positive_ratio
        );
        let mut value = serde_json::to_value(&r)?;
        value["seconds"] = seconds.into();
        reports.insert(d.name().to_string(), value);
    }
    crate::ranks::write_reports(ranks.as_ref(), &args.out, &reports)
}

/// Options of `selfemo probe faithfulness`.
#[derive(Args)]
pub struct FaithArgs {
    #[command(flatten)]
    pub targets: TargetArgs,
    /// Targets answered per generation batch.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Greedy tokens per answer (rationale and answer).
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// Take the recogniser prompt from a run config (its reply prefix must end with `<think>`).
    #[arg(long)]
    pub prompt_from: Option<PathBuf>,
    /// JSON report.
    #[arg(long, default_value = "faithfulness.json")]
    pub out: PathBuf,
}

/// Runs the faithfulness probe per dataset and prints EPC and EEA.
pub fn faithfulness(args: FaithArgs) -> Result<()> {
    use selfemo_datasets::Emotion;
    use selfemo_eval::faithfulness::{FaithAnswer, probe, report};
    use selfemo_selfplay::{RecognitionItem, ResponderPrompt, Roles};
    let t = &args.targets;
    let PromptSetup { template, window, budget, .. } = t.prompt_setup(args.prompt_from.as_deref())?;
    anyhow::ensure!(
        template.reply_prefix.trim_end().ends_with("<think>"),
        "the recogniser's reply prefix must end with <think> so it writes a rationale, got {:?}",
        template.reply_prefix
    );
    let ranks = crate::ranks::ranks()?;
    let m = t.load_model(ranks.as_ref())?;
    let policy = selfemo_eval::policy::ModelPolicy {
        model: &m.model,
        tok: &m.tokenizer,
        sampling: selfemo_model::SamplingConfig::greedy(args.max_new_tokens),
        score_rows: args.batch,
        vectors: None,
    };
    let (responder, rewards, judge) = (ResponderPrompt::default(), selfemo_rewards::RewardConfig::default(), selfemo_selfplay::JudgePrompt::default());
    let mut reports = serde_json::Map::new();
    if ranks.is_main() {
        println!("{:<10} {:>8} {:>11} {:>8} {:>8} {:>9}", "dataset", "targets", "rationales", "EPC", "EEA", "accuracy");
    }
    for (corpus, targets) in t.datasets()? {
        let d = corpus.dataset;
        let roles = Roles {
            recogniser: &template,
            responder: &responder,
            rerecognition_prefix: "<answer>",
            judge: &judge,
            labels: d.labels(),
            rewards: &rewards,
            max_prompt_tokens: budget,
        };
        let items: Vec<RecognitionItem> = targets.iter().enumerate().filter_map(|(k, x)| RecognitionItem::from_target(&corpus, *x, window, k as u64)).collect();
        let started = Instant::now();
        let bar = progress_bar(ranks.as_ref(), d.name(), items.len());
        let labels = d.labels();
        let index = |e: Emotion| labels.index(e).expect("answers are of the probed label set");
        let label = |i: usize| labels.get(i).expect("every rank indexes the same label set");
        let answers: Vec<FaithAnswer> = map_shares(ranks.as_ref(), &items, |mine| {
            let mut wire = Vec::with_capacity(mine.len());
            for chunk in mine.chunks(args.batch.max(1)) {
                wire.extend(probe(&policy, &roles, chunk).into_iter().map(|a| (index(a.gold), a.prediction.map(index), a.rationale, a.judged.map(index))));
                bar.inc(chunk.len() as u64);
            }
            wire
        })
        .into_iter()
        .map(|(gold, prediction, rationale, judged): (usize, Option<usize>, String, Option<usize>)| FaithAnswer {
            gold: label(gold),
            prediction: prediction.map(label),
            rationale,
            judged: judged.map(label),
        })
        .collect();
        bar.finish_and_clear();
        if !ranks.is_main() {
            continue;
        }
        let r = report(&answers);
        let share = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
        println!("{:<10} {:>8} {:>11} {:>8} {:>8} {:>9.4}", d.name(), r.targets, r.rationales, share(r.epc), share(r.eea), r.accuracy);
        let mut value = serde_json::to_value(&r)?;
        value["seconds"] = started.elapsed().as_secs_f64().into();
        // Every target's rationale and judgement, so a reader can check the shares.
        let name = |e: Option<Emotion>| e.map(|e| e.name());
        value["answers"] = answers
            .iter()
            .map(|a| serde_json::json!({ "gold": a.gold.name(), "prediction": name(a.prediction), "rationale": a.rationale, "judged": name(a.judged) }))
            .collect();
        reports.insert(d.name().to_string(), value);
    }
    crate::ranks::write_reports(ranks.as_ref(), &args.out, &reports)
}
