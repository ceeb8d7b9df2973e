//! Supervised passes: the warm start before self-play and the replay of kept rows between
//! iterations. Steps of completion-only cross-entropy after the recogniser prompt, on
//! `{gold}</answer>` (kind `label`), on self-written rationales that passed the re-prediction
//! check (kind `rationale`), or on the policy's own kept answers (replay).

use crate::collective::{Collective, Local, gather_concat, share};
use crate::config::WarmStartKind;
use crate::error::{Result, TrainError};
use crate::evaluation::DevCurve;
use crate::loss::sft_loss;
use crate::optim::{LrDecay, sum_gradients};
use crate::run_dir::{write_json, write_json_lines};
use crate::self_play::SYNTHETIC_IDS;
use crate::session::Session;
use crate::sharded::Sharded;
use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use selfemo_datasets::sampling::{LabelSampling, draw};
use selfemo_datasets::{Emotion, Target};
use selfemo_eval::policy::{ModelPolicy, render};
use selfemo_eval::recognition::{RecognitionPrompt, prompts};
use selfemo_model::{CausalLm, TextTokenizer, completion_logprobs, completion_logprobs_tree};
use selfemo_selfplay::{Flywheel, Rationale, RecognitionItem, Roles, Verdict, rationales};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// An SFT example: prompt ids and completion ids.
pub type Example = (Vec<u32>, Vec<u32>);

/// `text` and the end-of-turn token, as completion ids.
pub fn completion_ids(text: &str, tok: &TextTokenizer) -> Vec<u32> {
    let mut ids = tok.encode(text);
    ids.extend(tok.eos_ids.first());
    ids
}

/// The `label` example of a prompt: the gold label, `</answer>` and the end-of-turn token.
pub fn label_example(prompt: &RecognitionPrompt, tok: &TextTokenizer) -> Example {
    (prompt.ids.clone(), completion_ids(&format!("{}</answer>", prompt.gold), tok))
}

/// How long and how fast an SFT pass runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SftPlan {
    /// Optimiser steps at most.
    pub steps: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// How the rate moves from the peak over the pass: progress is the larger of the steps
    /// done over `steps` − 1 and the time spent over `budget`.
    pub decay: LrDecay,
    /// The rate at the end of the pass as a share of the peak (cosine decay).
    pub min_lr_ratio: f64,
    /// Stop once the steps so far took this long (`None`: no limit).
    pub budget: Option<Duration>,
    /// Call `checkpoint` after every n steps (0 = never; the last step is always reported).
    pub every: usize,
    /// Run each batch as one prefix tree (see [`selfemo_model::completion_logprobs_tree`]).
    pub prefix_sharing: bool,
    /// Passes a batch is split into (consecutive examples, as even as possible), their
    /// gradients summed: the same step with less memory.
    pub micro_batches: usize,
}

impl SftPlan {
    /// The learning rate of step `step` (from 0), taken after `seconds` of the pass.
    pub fn rate(&self, step: usize, seconds: f64) -> f64 {
        let by_steps = if self.steps > 1 { step as f64 / (self.steps - 1) as f64 } else { 0.0 };
        let by_time = self.budget.map_or(0.0, |b| seconds / b.as_secs_f64().max(f64::MIN_POSITIVE));
        self.decay.rate(self.learning_rate, self.min_lr_ratio, by_steps.max(by_time))
    }
}

/// What an SFT pass did.
#[derive(Debug, Clone, PartialEq)]
pub struct SftOutcome {
    /// The loss of every step.
    pub losses: Vec<f64>,
    /// Seconds spent in the steps (checkpoint callbacks excluded).
    pub seconds: f64,
}

/// Runs up to `plan.steps` SFT steps over `examples` (cycled, `batch_size` per step, in
/// order; an example may appear many times; rows padded with `pad`), stopping early when the
/// budget is spent. After every `plan.every` steps and after
/// the last, `checkpoint(step, model, seconds so far)` runs (an evaluation, say); its time does
/// not count against the budget.
pub fn sft(
    model: CausalLm,
    optim: &mut ModuleOptimizer,
    examples: &[&Example],
    pad: u32,
    plan: &SftPlan,
    checkpoint: &mut dyn FnMut(usize, &CausalLm, f64) -> Result<()>,
) -> Result<(CausalLm, SftOutcome)> {
    sft_on(&Local, model, optim, examples, pad, plan, checkpoint)
}

/// [`sft`] on the ranks of `collective`: each step's passes (`micro_batches` rounded up to a
/// multiple of the ranks) are shared out ([`share`]), each pass's loss is its tokens' part of
/// the batch's token mean, the gradients are summed over the ranks and every rank takes the
/// same step (with the passes one process would run, that process's step); rank 0's clock
/// decides the budget and the learning-rate decay for all.
#[allow(clippy::too_many_arguments)]
pub fn sft_on(
    collective: &dyn Collective,
    mut model: CausalLm,
    optim: &mut ModuleOptimizer,
    examples: &[&Example],
    pad: u32,
    plan: &SftPlan,
    checkpoint: &mut dyn FnMut(usize, &CausalLm, f64) -> Result<()>,
) -> Result<(CausalLm, SftOutcome)> {
    let mut outcome = SftOutcome { losses: Vec::with_capacity(plan.steps), seconds: 0.0 };
    if examples.is_empty() {
        return Ok((model, outcome));
    }
    for step in 0..plan.steps {
        let started = Instant::now();
        let batch: Vec<&Example> = (0..plan.batch_size).map(|i| examples[(step * plan.batch_size + i) % examples.len()]).collect();
        let tokens: usize = batch.iter().map(|e| e.1.len()).sum();
        let (size, parts) = (collective.size(), plan.micro_batches.max(1));
        let parts = parts.div_ceil(size) * size;
        let mut accumulated = GradientsAccumulator::new();
        let mut values = Vec::new();
        for part in share(parts, collective.rank(), size) {
            let mine = &batch[share(batch.len(), part, parts)];
            if mine.is_empty() {
                continue;
            }
            let prompts: Vec<Vec<u32>> = mine.iter().map(|e| e.0.clone()).collect();
            let completions: Vec<Vec<u32>> = mine.iter().map(|e| e.1.clone()).collect();
            let logprobs = if plan.prefix_sharing {
                completion_logprobs_tree(&model, &prompts, &completions, 1.0)
            } else {
                completion_logprobs(&model, &prompts, &completions, pad, 1.0)
            };
            let loss = sft_loss(logprobs, tokens);
            let value = loss.clone().into_scalar::<f32>() as f64;
            if value.is_finite() {
                accumulated.accumulate(&model, GradientsParams::from_grads(loss.backward(), &model));
            }
            values.push(value);
        }
        let mut grads = accumulated.grads();
        let value: f64 = gather_concat(collective, values).into_iter().sum();
        if !value.is_finite() {
            return Err(TrainError::NonFinite(format!("SFT step {}: non-finite loss {value}", step + 1)));
        }
        sum_gradients(collective, &model, &mut grads);
        model = optim.step(plan.rate(step, outcome.seconds), model, grads);
        outcome.losses.push(value);
        outcome.seconds += started.elapsed().as_secs_f64();
        if collective.size() > 1 {
            outcome.seconds = gather_concat(collective, vec![outcome.seconds])[0];
        }
        let out_of_time = plan.budget.is_some_and(|b| outcome.seconds >= b.as_secs_f64());
        let last = step + 1 == plan.steps || out_of_time;
        if last || (plan.every > 0 && (step + 1) % plan.every == 0) {
            checkpoint(step + 1, &model, outcome.seconds)?;
        }
        if out_of_time {
            break;
        }
    }
    Ok((model, outcome))
}

/// What the warm start did (`warm_start.json`), so a resumed run knows its training time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct WarmStartRecord {
    steps: usize,
    examples: usize,
    distinct: usize,
    first_loss: Option<f64>,
    last_loss: Option<f64>,
    pub(crate) seconds: f64,
}

/// The SFT warm start on `targets` (in training order, repeats allowed), with dev evaluations
/// on its way (`warm_start-<step>`); returns the model and the seconds of SFT.
pub(crate) fn warm_start_phase(s: &Session, model: CausalLm, roles: &Roles, targets: &[Target], curve: &mut DevCurve) -> Result<(CausalLm, f64)> {
    let (c, ws, tok) = (s.config, &s.config.warm_start, s.tok);
    // Each distinct target's example once; the training order refers to them.
    let mut seen = std::collections::HashSet::new();
    let distinct: Vec<Target> = targets.iter().copied().filter(|t| seen.insert(*t)).collect();
    let by_target: HashMap<Target, Example> = match ws.kind {
        WarmStartKind::Label => {
            let ps = prompts(s.corpus, &distinct, &c.prompt, c.data.context_span(), c.data.max_prompt_tokens, tok);
            ps.iter().map(|p| (p.target, label_example(p, tok))).collect()
        }
        WarmStartKind::Rationale => rationale_examples(s, &model, roles, &distinct)?,
    };
    // The training order, less targets without an example.
    let order: Vec<&Target> = targets.iter().filter(|t| by_target.contains_key(t)).collect();
    let examples: Vec<&Example> = order.iter().map(|t| &by_target[*t]).collect();
    let plan = SftPlan {
        steps: ws.steps,
        batch_size: ws.batch_size,
        learning_rate: ws.learning_rate,
        decay: ws.lr_decay,
        min_lr_ratio: ws.min_lr_ratio,
        budget: (ws.minutes > 0.0).then(|| Duration::from_secs_f64(ws.minutes * 60.0)),
        every: ws.eval_every,
        prefix_sharing: c.grpo.prefix_sharing,
        micro_batches: ws.gradient_accumulation_steps,
    };
    let mut evaluate = |step: usize, m: &CausalLm, seconds: f64| s.evaluate(curve, &m.valid(), &format!("warm_start-{step}"), 0, seconds).map(|_| ());
    let (model, outcome) = sft_on(s.collective, model, &mut c.grpo.adamw.build(), &examples, tok.pad_id, &plan, &mut evaluate)?;
    let (first, last) = (outcome.losses.first().copied(), outcome.losses.last().copied());
    let seen_examples = (outcome.losses.len() * ws.batch_size).min(examples.len());
    let record = WarmStartRecord {
        steps: outcome.losses.len(),
        examples: seen_examples,
        distinct: distinct_trained(order.iter().copied(), seen_examples),
        first_loss: first,
        last_loss: last,
        seconds: outcome.seconds,
    };
    if s.writes() {
        write_json(&s.run_dir.join("warm_start.json"), &record)?;
    }
    s.log(&format!(
        "warm start: {} SFT steps on {} examples ({} distinct targets) in {:.1} min, loss {:.4} -> {:.4}",
        record.steps,
        record.examples,
        record.distinct,
        record.seconds / 60.0,
        first.unwrap_or(f64::NAN),
        last.unwrap_or(f64::NAN)
    ))?;
    Ok((model, outcome.seconds))
}

/// Distinct targets among the first `seen` of `order`: the examples an SFT pass that takes them
/// in order (wrapping after the last) trained on.
fn distinct_trained<'a>(order: impl Iterator<Item = &'a Target>, seen: usize) -> usize {
    order.take(seen).collect::<std::collections::HashSet<_>>().len()
}

/// Ids of warm-start rationale items (apart from every rollout item's).
const RATIONALE_IDS: usize = 1 << 42;

/// The `rationale` warm start's examples by target: the policy explains each target's gold
/// label, and the rationales that pass every check (`warm_start_rationales.jsonl` lists them all).
fn rationale_examples(s: &Session, model: &CausalLm, roles: &Roles, targets: &[Target]) -> Result<HashMap<Target, Example>> {
    let (c, tok) = (s.config, s.tok);
    let items: Vec<(Target, RecognitionItem)> = targets
        .iter()
        .enumerate()
        .filter_map(|(k, t)| RecognitionItem::from_target(s.corpus, *t, c.data.context_span(), (RATIONALE_IDS + k) as u64).map(|i| (*t, i)))
        .collect();
    let (targets, items): (Vec<Target>, Vec<RecognitionItem>) = items.into_iter().unzip();
    let writer = model.valid();
    let own = ModelPolicy { model: &writer, tok, sampling: c.grpo.sampling(), score_rows: c.eval.batch_size, vectors: None };
    let policy = Sharded { inner: &own, collective: s.collective };
    let written = rationales(&policy, roles, &items, &c.warm_start.rationale_hint, c.seed);
    if s.writes() {
        write_rationales(&s.run_dir.join("warm_start_rationales.jsonl"), &written)?;
    }
    let count = |v: Verdict| written.iter().filter(|r| r.verdict() == v).count();
    s.log(&format!(
        "warm start: kept {} of {} self-written rationales; rejected {} naming an emotion, {} whose label-free re-prediction disagrees, {} empty",
        count(Verdict::Kept),
        written.len(),
        count(Verdict::NamesEmotion),
        count(Verdict::Disagrees),
        count(Verdict::Empty)
    ))?;
    let kept = targets.into_iter().zip(&written).filter(|(_, r)| r.kept());
    Ok(kept.map(|(t, r)| (t, (tok.encode(&render(tok, &roles.recognition_prompt(&policy, &r.item))), completion_ids(&r.completion(), tok)))).collect())
}

/// The recognition rows iteration k−1 kept, trained on by SFT before iteration k's first step
/// (`iter-<k>/replay.jsonl` lists the examples in training order); returns the seconds taken.
pub(crate) fn replay(s: &Session, model: CausalLm, roles: &Roles, flywheel: &Flywheel, k: u32) -> Result<(CausalLm, f64)> {
    let (c, sp, tok) = (s.config, &s.config.selfplay, s.tok);
    let kept = flywheel.recognition_examples(k - 1, s.corpus.dataset.labels(), &c.prompt.reply_prefix, SYNTHETIC_IDS + (u64::from(k) << 24) + (1 << 23));
    let examples: Vec<Example> = {
        let m = model.valid();
        let policy = ModelPolicy { model: &m, tok, sampling: c.grpo.sampling(), score_rows: c.eval.batch_size, vectors: None };
        let prompt_ids = |item: &RecognitionItem| tok.encode(&render(tok, &roles.recognition_prompt(&policy, item)));
        kept.iter().map(|(item, completion)| (prompt_ids(item), completion_ids(completion, tok))).collect()
    };
    let golds: Vec<Emotion> = kept.iter().map(|(item, _)| item.gold).collect();
    let order = replay_order(&golds, sp.sft_epochs, sp.sft_batch_size, sp.sft_label_sampling, c.seed ^ (REPLAY_SALT + u64::from(k)));
    let steps = order.len() / sp.sft_batch_size;
    let lines = order.iter().map(|i| {
        let (item, completion) = &kept[*i];
        serde_json::json!({ "source": item.source, "label": item.gold.name(), "completion": completion })
    });
    if s.writes() {
        write_json_lines(&s.run_dir.join(format!("iter-{k}/replay.jsonl")), lines)?;
    }
    let plan = SftPlan {
        steps,
        batch_size: sp.sft_batch_size,
        learning_rate: sp.sft_learning_rate,
        decay: LrDecay::Constant,
        min_lr_ratio: 1.0,
        budget: None,
        every: 0,
        prefix_sharing: c.grpo.prefix_sharing,
        micro_batches: 1,
    };
    let examples: Vec<&Example> = order.iter().map(|i| &examples[*i]).collect();
    let (model, outcome) = sft_on(s.collective, model, &mut c.grpo.adamw.build(), &examples, tok.pad_id, &plan, &mut |_, _, _| Ok(()))?;
    let losses = &outcome.losses;
    s.event(&format!(
        "iteration {k}: {} SFT steps ({} examples) on {} kept recognition rows of iteration {}, loss {:.4} -> {:.4}",
        losses.len(),
        examples.len(),
        kept.len(),
        k - 1,
        losses.first().copied().unwrap_or(f64::NAN),
        losses.last().copied().unwrap_or(f64::NAN)
    ))?;
    Ok((model, outcome.seconds))
}

/// Salt of the replay's label draws (apart from the data pools' 1–3).
const REPLAY_SALT: u64 = 1 << 20;

/// Indices into the kept rows' gold labels, in replay order: `epochs` passes' worth of examples
/// rounded up to whole batches of `batch_size`, drawn by `sampling` (`natural`: the rows in
/// order, cycling).
fn replay_order(golds: &[Emotion], epochs: f64, batch_size: usize, sampling: LabelSampling, seed: u64) -> Vec<usize> {
    let steps = (epochs * golds.len() as f64 / batch_size as f64).ceil() as usize;
    draw(golds, steps * batch_size, sampling, seed)
}

/// The warm start's rationales as JSON lines: source, gold, rationale, re-prediction, verdict.
fn write_rationales(path: &Path, written: &[Rationale]) -> Result<()> {
    let lines = written.iter().map(|r| {
        serde_json::json!({
            "source": r.item.source, "gold": r.item.gold.name(), "rationale": r.text,
            "repredicted": r.repredicted.map(|e| e.name()), "verdict": r.verdict(), "kept": r.kept(),
        })
    });
    write_json_lines(path, lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfemo_datasets::labels::MELD;

    #[test]
    fn distinct_counts_only_the_targets_trained_on() {
        // A minutes-budgeted plan repeats a pool of 3 targets; training stopped after 4 examples.
        let t = |dialogue| Target { dialogue, turn: 0 };
        let order = [t(0), t(1), t(0), t(2), t(1), t(0)];
        assert_eq!(distinct_trained(order.iter(), 2), 2);
        assert_eq!(distinct_trained(order.iter(), 3), 2, "a repeat adds nothing");
        assert_eq!(distinct_trained(order.iter(), 4), 3);
        assert_eq!(distinct_trained(order.iter(), 100), 3, "more steps than the order: every target");
    }

    #[test]
    fn the_replay_runs_whole_batches_and_balanced_sampling_evens_out_a_skewed_flywheel() {
        // Kept rows skewed as d-selfemo-v4-seed1's (most of one label, one or two of others).
        let e = |n: &str| MELD.parse(n).unwrap();
        let counts = [("joy", 7), ("neutral", 5), ("surprise", 3), ("anger", 1), ("sadness", 1), ("fear", 1)];
        let golds: Vec<Emotion> = counts.iter().flat_map(|(n, c)| vec![e(n); *c]).collect();
        let share = |order: &[usize], label: &str| order.iter().filter(|i| golds[**i] == e(label)).count() as f64 / order.len() as f64;

        let natural = replay_order(&golds, 1.0, 8, LabelSampling::Natural, 5);
        assert_eq!(natural, (0..18).chain(0..6).collect::<Vec<_>>(), "one pass of 18 rows, rounded up to 3 batches of 8");
        assert!(share(&natural, "joy") > 0.35);

        let balanced = replay_order(&golds, 40.0, 8, LabelSampling::Balanced, 5);
        assert_eq!(balanced.len(), 90 * 8, "40 passes of 18 rows in batches of 8");
        for (label, _) in counts {
            assert!((share(&balanced, label) - 1.0 / 6.0).abs() < 0.04, "{label}: {}", share(&balanced, label));
        }
        assert!(replay_order(&[], 1.0, 8, LabelSampling::Balanced, 5).is_empty());
        assert!(replay_order(&golds, 0.0, 8, LabelSampling::Balanced, 5).is_empty());
    }
}
