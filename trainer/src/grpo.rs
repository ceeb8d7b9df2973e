//! One SELF-GRPO iteration: sample a group per prompt with π_old, score it, turn rewards into
//! group-relative advantages, and take μ optimiser steps on the clipped objective.

use crate::collective::{Collective, Local, gather_concat, share};
use crate::loss::{Clip, LossStats, LossType, TokenBatch, grpo_loss};
use crate::optim::{LrSchedule, clip_global_norm, sum_gradients};
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;
use selfemo_model::generate::sample_each;
use selfemo_model::{CausalLm, SamplingConfig, completion_logprobs, completion_logprobs_tree};
use selfemo_rewards::{ScaleRewards, advantages};
pub use selfemo_selfplay::sample_seed;

/// One sampled completion of a group.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Generated ids (end-of-turn included when produced).
    pub completion: Vec<u32>,
    /// log π_old per token, from sampling time.
    pub old_logprobs: Vec<f64>,
    /// log π_behaviour per token when a steered policy drew the sample (`None`: π_old did).
    pub behaviour_logprobs: Option<Vec<f64>>,
    /// Entropy of π_old per token, from sampling time.
    pub entropies: Vec<f64>,
    /// Cut at max_completion_length without an end-of-turn token.
    pub truncated: bool,
    /// Total reward r_i.
    pub reward: f64,
    /// Group consistency C_i: the tie-breaker when every r_i of the group is equal.
    pub consistency: f64,
}

/// A prompt and its G samples: the unit advantages are computed over. Never parallel arrays.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// Which prompt (index into the run's prompt list); seeds and logs refer to it.
    pub prompt_id: usize,
    /// Prompt ids.
    pub prompt: Vec<u32>,
    /// The G samples.
    pub samples: Vec<Sample>,
}

/// Samples G completions for each (prompt id, prompt) with the rollout policy (no autodiff), in
/// one batched generation seeded by [`sample_seed`]; rewards start at 0 for the caller to fill.
#[allow(clippy::too_many_arguments)]
pub fn rollout(
    policy: &CausalLm,
    prompts: &[(usize, Vec<u32>)],
    num_generations: usize,
    sampling: &SamplingConfig,
    seed: u64,
    step: u64,
    eos: &[u32],
    pad: u32,
) -> Vec<Group> {
    let ids: Vec<Vec<u32>> = prompts.iter().map(|(_, p)| p.clone()).collect();
    let seeds: Vec<Vec<u64>> = prompts.iter().map(|(id, _)| (0..num_generations as u64).map(|g| sample_seed(seed, step, *id as u64, g)).collect()).collect();
    prompts
        .iter()
        .zip(sample_each(policy, &ids, &seeds, sampling, eos, pad, None))
        .map(|((id, p), gens)| Group {
            prompt_id: *id,
            prompt: p.clone(),
            samples: gens
                .into_iter()
                .map(|g| Sample {
                    truncated: !g.finished,
                    completion: g.tokens,
                    old_logprobs: g.logprobs,
                    behaviour_logprobs: None,
                    entropies: g.entropies,
                    reward: 0.0,
                    consistency: 0.0,
                })
                .collect(),
        })
        .collect()
}

/// How an update is computed.
#[derive(Debug, Clone)]
pub struct UpdateSettings {
    /// Clip range and β.
    pub clip: Clip,
    /// Aggregation.
    pub loss_type: LossType,
    /// Advantage scaling.
    pub scale_rewards: ScaleRewards,
    /// ε added to the std.
    pub advantage_epsilon: f64,
    /// For Dr.GRPO's constant normaliser.
    pub max_completion_length: usize,
    /// Drop truncated completions from the loss.
    pub mask_truncated_completions: bool,
    /// Temperature the log-probs are taken at (the sampling temperature).
    pub temperature: f64,
    /// Global gradient-norm clip (0 = off).
    pub max_grad_norm: f64,
    /// μ: optimiser steps per rollout batch.
    pub num_iterations: usize,
    /// What groups whose rewards are all equal do.
    pub degenerate_groups: DegenerateGroups,
    /// Micro-batches whose gradients are summed before each optimiser step (memory, not maths:
    /// the token weights are those of the whole batch, so the step is the same).
    pub gradient_accumulation_steps: usize,
    /// C of the truncated importance weight min(π_old/π_behaviour, C) of steered tokens.
    pub importance_cap: f64,
    /// Run each micro-batch as one prefix tree (a group's prompt once) instead of padded rows
    /// (the prompt once per completion): the same loss and gradients, less work.
    pub prefix_sharing: bool,
    /// Most tokens one pass runs (a micro-batch over it is split further; 0 = no limit):
    /// bounds the memory of long prompts and completions, not the maths.
    pub max_tree_tokens: usize,
    /// Pad id.
    pub pad: u32,
}

impl UpdateSettings {
    /// log π(o_t | q, o_<t) of every completion token at the sampling temperature, in the
    /// layout `prefix_sharing` chooses.
    pub fn logprobs(&self, model: &CausalLm, prompts: &[Vec<u32>], completions: &[Vec<u32>]) -> Tensor<1> {
        if self.prefix_sharing {
            completion_logprobs_tree(model, prompts, completions, self.temperature)
        } else {
            completion_logprobs(model, prompts, completions, self.pad, self.temperature)
        }
    }
}

/// What a group whose rewards are all equal (no learning signal) does in the update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DegenerateGroups {
    /// Kept with zero advantage: its tokens still count in the loss normaliser (TRL).
    #[default]
    Keep,
    /// Left out of the loss, so it does not dilute the others (DAPO's dynamic-sampling filter,
    /// without refilling the batch).
    Drop,
    /// Replaced before the update by groups of fresh prompts, one round (DAPO's dynamic
    /// sampling); groups still degenerate after it are dropped. The run does the refill.
    Resample,
    /// Advantages from the group-consistency values C_i instead (the tie-breaker); a group
    /// whose C_i are equal too keeps zero advantage.
    Consistency,
}

/// What an update measured, per TRL's metric names where they exist; each is the mean over
/// the μ optimiser steps (as TRL logs the mean over a logging interval).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpdateStats {
    /// Loss.
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// KL, clip ratios.
    pub loss_stats: LossStats,
    /// Share of groups whose rewards were all equal (`frac_reward_zero_std`).
    pub frac_reward_zero_std: f64,
    /// Mean truncated importance weight over steered tokens (`None` without any).
    pub importance_weight: Option<f64>,
    /// The learning rate of the first of the μ steps.
    pub learning_rate: f64,
}

/// A step that produced NaN or inf: the model is left as it was.
#[derive(Debug, thiserror::Error)]
#[error("non-finite {what} ({value}) at update step {step}: the step was not applied")]
pub struct NonFinite {
    /// loss or grad_norm.
    pub what: &'static str,
    /// The value.
    pub value: f64,
    /// Which of the μ steps.
    pub step: usize,
}

/// Sample bounds of the micro-batches: `parts` consecutive runs as even as possible, each cut
/// further so that no pass holds more than `budget` tokens (a prompt counted once for the
/// consecutive samples that share it, as a prefix tree runs it; a lone sample over the budget
/// is its own pass). `budget` 0 = no limit.
pub fn micro_batches(prompts: &[Vec<u32>], lengths: &[usize], parts: usize, budget: usize) -> Vec<usize> {
    let n = prompts.len();
    let parts = parts.clamp(1, n.max(1));
    let even: Vec<usize> = (0..=parts).map(|i| i * n / parts).collect();
    let mut bounds = vec![0];
    for w in even.windows(2) {
        let mut tokens = 0;
        for i in w[0]..w[1] {
            let cost = lengths[i] + if i == w[0] || prompts[i] != prompts[i - 1] { prompts[i].len() } else { 0 };
            if budget > 0 && tokens > 0 && tokens + cost > budget {
                bounds.push(i);
                tokens = prompts[i].len() + lengths[i];
            } else {
                tokens += cost;
            }
        }
        bounds.push(w[1]);
    }
    bounds.dedup();
    if bounds.len() == 1 {
        bounds.push(0);
    }
    bounds
}

/// The truncated importance weight min(π_old/π_behaviour, C) of each token of a sample (1 for
/// every token when π_old drew it).
pub fn importance_weights(sample: &Sample, cap: f64) -> Vec<f64> {
    match &sample.behaviour_logprobs {
        None => vec![1.0; sample.completion.len()],
        Some(b) => sample.old_logprobs.iter().zip(b).map(|(old, beh)| (old - beh).exp().min(cap)).collect(),
    }
}

/// Runs μ optimiser steps of the SELF-GRPO loss on `groups`, optimiser step j of them (from
/// `first_step`, counted over the run) at `schedule`'s rate. `reference` is the frozen
/// reference policy (its forward is skipped when β = 0). On NaN/inf the error is returned
/// together with the last good model.
pub fn update(
    model: CausalLm,
    reference: Option<&CausalLm>,
    optim: &mut ModuleOptimizer,
    groups: &[Group],
    settings: &UpdateSettings,
    schedule: &LrSchedule,
    first_step: usize,
) -> (CausalLm, Result<UpdateStats, NonFinite>) {
    update_on(&Local, model, reference, optim, groups, settings, schedule, first_step)
}

/// [`update`] on the ranks of `collective`, each holding every group: the micro-batches
/// (`gradient_accumulation_steps` rounded up to a multiple of the ranks, each within the token
/// budget) are shared out ([`share`]), each rank runs its own with the whole batch's token
/// weights, the gradients are summed over the ranks ([`sum_gradients`]) and every rank takes the
/// same optimiser step. With the micro-batches one process would run, the step is that
/// process's step: the same passes, their gradients summed in f32.
#[allow(clippy::too_many_arguments)]
pub fn update_on(
    collective: &dyn Collective,
    mut model: CausalLm,
    reference: Option<&CausalLm>,
    optim: &mut ModuleOptimizer,
    groups: &[Group],
    settings: &UpdateSettings,
    schedule: &LrSchedule,
    first_step: usize,
) -> (CausalLm, Result<UpdateStats, NonFinite>) {
    let rewards: Vec<Vec<f64>> = groups.iter().map(|g| g.samples.iter().map(|s| s.reward).collect()).collect();
    let mut adv = match advantages(&rewards, settings.scale_rewards, settings.advantage_epsilon) {
        Ok(a) => a,
        Err(_) => return (model, Err(NonFinite { what: "reward", value: f64::NAN, step: 0 })),
    };
    let frac_reward_zero_std = adv.iter().filter(|a| a.degenerate).count() as f64 / adv.len().max(1) as f64;
    if settings.degenerate_groups == DegenerateGroups::Consistency {
        for (a, g) in adv.iter_mut().zip(groups) {
            if a.degenerate {
                let c: Vec<f64> = g.samples.iter().map(|s| s.consistency).collect();
                if let Ok(mut tie) = advantages(&[c], ScaleRewards::Group, settings.advantage_epsilon) {
                    *a = tie.remove(0);
                }
            }
        }
    }
    let drop = matches!(settings.degenerate_groups, DegenerateGroups::Drop | DegenerateGroups::Resample);
    let samples: Vec<(&Group, &Sample, f64)> = groups
        .iter()
        .zip(&adv)
        .filter(|(_, a)| !(drop && a.degenerate))
        .flat_map(|(g, a)| g.samples.iter().zip(&a.values).map(move |(s, v)| (g, s, *v)))
        .collect();
    let prompts: Vec<Vec<u32>> = samples.iter().map(|(g, _, _)| g.prompt.clone()).collect();
    let completions: Vec<Vec<u32>> = samples.iter().map(|(_, s, _)| s.completion.clone()).collect();
    let lengths: Vec<usize> = completions.iter().map(Vec::len).collect();
    let included: Vec<bool> = samples.iter().map(|(_, s, _)| !(settings.mask_truncated_completions && s.truncated)).collect();
    let learning_rate = schedule.at(first_step);
    if completions.iter().all(Vec::is_empty) {
        // Nothing to learn from (every group dropped, or empty completions): no step.
        return (model, Ok(UpdateStats { frac_reward_zero_std, learning_rate, ..Default::default() }));
    }
    // Micro-batches: consecutive samples, as even as possible, each within the token budget;
    // this rank runs `mine` of them, samples `rows` and tokens `cols` of the batch.
    let (size, gas) = (collective.size(), settings.gradient_accumulation_steps.max(1));
    let bounds = micro_batches(&prompts, &lengths, gas.div_ceil(size) * size, settings.max_tree_tokens);
    let token_start = |i: usize| lengths[..bounds[i]].iter().sum::<usize>();
    let mine = share(bounds.len() - 1, collective.rank(), size);
    let (rows, cols) = (bounds[mine.start]..bounds[mine.end], token_start(mine.start)..token_start(mine.end));
    let ref_logprobs = match (reference, settings.clip.beta > 0.0, rows.is_empty()) {
        (Some(r), true, false) => {
            let lp = settings.logprobs(r, &prompts[rows.clone()], &completions[rows.clone()]);
            Some(lp.try_to_vec_as::<f32>().expect("the backend reads back its own tensor"))
        }
        _ => None,
    };
    let steered: Vec<f64> =
        samples.iter().filter(|(_, s, _)| s.behaviour_logprobs.is_some()).flat_map(|(_, s, _)| importance_weights(s, settings.importance_cap)).collect();
    let batch = TokenBatch {
        old_logprobs: samples.iter().flat_map(|(_, s, _)| s.old_logprobs.iter().map(|x| *x as f32)).collect(),
        ref_logprobs: None,
        advantages: samples.iter().flat_map(|(_, s, a)| std::iter::repeat_n(*a as f32, s.completion.len())).collect(),
        importance: samples.iter().flat_map(|(_, s, _)| importance_weights(s, settings.importance_cap)).map(|w| w as f32).collect(),
        weights: settings.loss_type.token_weights(&lengths, &included, settings.max_completion_length).into_iter().map(|w| w as f32).collect(),
    };
    let mut local = batch.slice(cols.clone());
    local.ref_logprobs = ref_logprobs;
    let importance_weight = (!steered.is_empty()).then(|| steered.iter().sum::<f64>() / steered.len() as f64);
    let mut per_step: Vec<(f64, f64, LossStats)> = Vec::new();
    let steps = settings.num_iterations.max(1);
    for step in 0..steps {
        let mut accumulated = GradientsAccumulator::new();
        let mut mine_stats = Vec::with_capacity(mine.len());
        for i in mine.clone() {
            let (samples, tokens) = (bounds[i]..bounds[i + 1], token_start(i) - cols.start..token_start(i + 1) - cols.start);
            let logprobs = settings.logprobs(&model, &prompts[samples.clone()], &completions[samples]);
            let (loss, s) = grpo_loss(logprobs, &local.slice(tokens.clone()), settings.clip);
            if s.loss.is_finite() {
                accumulated.accumulate(&model, GradientsParams::from_grads(loss.backward(), &model));
            }
            mine_stats.push(((s.loss, s.kl, s.clip_low, s.clip_high), local.weights[tokens].iter().filter(|w| **w > 0.0).count()));
        }
        // Every part's stats, in part order, on every rank: they all decide alike.
        let parts_stats: Vec<(LossStats, usize)> = gather_concat(collective, mine_stats)
            .into_iter()
            .map(|((loss, kl, clip_low, clip_high), n)| (LossStats { loss, kl, clip_low, clip_high }, n))
            .collect();
        if let Some((s, _)) = parts_stats.iter().find(|(s, _)| !s.loss.is_finite()) {
            return (model, Err(NonFinite { what: "loss", value: s.loss, step }));
        }
        let mut grads = accumulated.grads();
        sum_gradients(collective, &model, &mut grads);
        let norm = clip_global_norm(&model, &mut grads, settings.max_grad_norm);
        if !norm.is_finite() {
            return (model, Err(NonFinite { what: "grad_norm", value: norm, step }));
        }
        per_step.push((parts_stats.iter().map(|(s, _)| s.loss).sum(), norm, LossStats::combine(&parts_stats)));
        model = optim.step(schedule.at(first_step + step), model, grads);
    }
    let mean = |f: &dyn Fn(&(f64, f64, LossStats)) -> f64| per_step.iter().map(f).sum::<f64>() / steps as f64;
    let loss_stats = LossStats { loss: mean(&|s| s.2.loss), kl: mean(&|s| s.2.kl), clip_low: mean(&|s| s.2.clip_low), clip_high: mean(&|s| s.2.clip_high) };
    let stats = UpdateStats { loss: mean(&|s| s.0), grad_norm: mean(&|s| s.1), loss_stats, frac_reward_zero_std, importance_weight, learning_rate };
    (model, Ok(stats))
}
