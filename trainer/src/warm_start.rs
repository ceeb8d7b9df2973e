//! Supervised passes: the warm start before self-play and the replay of kept rows between
//! iterations. Steps of completion-only cross-entropy after the recogniser prompt, on
//! `{gold}</answer>` (kind `label`), on self-written rationales that passed the re-prediction
//! check (kind `rationale`), or on the policy's own kept answers (replay).

use crate::loss::sft_loss;
use crate::recognition::RecognitionPrompt;
use burn::optim::{GradientsParams, ModuleOptimizer};
use selfemo_model::{CausalLm, TextTokenizer, completion_logprobs, completion_logprobs_tree};
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
    /// Constant learning rate.
    pub learning_rate: f64,
    /// Stop once the steps so far took this long (`None`: no limit).
    pub budget: Option<Duration>,
    /// Call `checkpoint` after every n steps (0 = never; the last step is always reported).
    pub every: usize,
    /// Run each batch as one prefix tree (see [`selfemo_model::completion_logprobs_tree`]).
    pub prefix_sharing: bool,
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
    mut model: CausalLm,
    optim: &mut ModuleOptimizer,
    examples: &[&Example],
    pad: u32,
    plan: &SftPlan,
    checkpoint: &mut dyn FnMut(usize, &CausalLm, f64) -> anyhow::Result<()>,
) -> anyhow::Result<(CausalLm, SftOutcome)> {
    let mut outcome = SftOutcome { losses: Vec::with_capacity(plan.steps), seconds: 0.0 };
    if examples.is_empty() {
        return Ok((model, outcome));
    }
    for step in 0..plan.steps {
        let started = Instant::now();
        let batch: Vec<&Example> = (0..plan.batch_size).map(|i| examples[(step * plan.batch_size + i) % examples.len()]).collect();
        let prompts: Vec<Vec<u32>> = batch.iter().map(|e| e.0.clone()).collect();
        let completions: Vec<Vec<u32>> = batch.iter().map(|e| e.1.clone()).collect();
        let logprobs = if plan.prefix_sharing { completion_logprobs_tree(&model, &prompts, &completions, 1.0) } else { completion_logprobs(&model, &prompts, &completions, pad, 1.0) };
        let loss = sft_loss(logprobs);
        let value = loss.clone().into_scalar::<f32>() as f64;
        anyhow::ensure!(value.is_finite(), "SFT step {}: non-finite loss {value}", step + 1);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(plan.learning_rate, model, grads);
        outcome.losses.push(value);
        outcome.seconds += started.elapsed().as_secs_f64();
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
