//! One self-play SELF-GRPO step: the step's items → both roles' rollouts (recogniser groups;
//! responder groups with their re-recognition) → the flywheel's keep-rules → the refill of
//! degenerate groups (dynamic sampling) → the update → one metrics row. The run loop and
//! `selfemo bench train` both run exactly this.

use crate::collective::{Collective, Counted};
use crate::config::RunConfig;
use crate::error::{AtPath, Result, TrainError};
use crate::grpo::{NonFinite, UpdateSettings, update_on};
use crate::metrics_log::Row;
use crate::optim::LrSchedule;
use crate::self_play::{StepItems, count_metrics, role_metrics, to_groups};
use crate::sharded::Sharded;
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use selfemo_eval::policy::ModelPolicy;
use selfemo_model::{CausalLm, EmotionVectors, TextTokenizer};
use selfemo_rewards::advantage::mean_std;
use selfemo_selfplay::{ExpressionGroup, FilterCounts, Flywheel, RecognitionGroup, RecognitionItem, Rerecogniser, Roles, recognise, respond};
use std::collections::BTreeMap;
use std::time::Instant;

/// What every step of a run shares.
pub struct Step<'a> {
    /// The run's settings.
    pub config: &'a RunConfig,
    /// The policy's tokenizer.
    pub tok: &'a TextTokenizer,
    /// Role templates, labels and rewards.
    pub roles: Roles<'a>,
    /// Fresh recognition items that replace degenerate groups (empty: no refill).
    pub reserve: &'a [RecognitionItem],
    /// Emotion vectors for steered responder samples.
    pub vectors: Option<&'a EmotionVectors>,
    /// The frozen policy as it entered self-play: the KL reference (β > 0), and the
    /// re-recogniser when `selfplay.rerecogniser = "reference"`.
    pub frozen: Option<&'a CausalLm>,
    /// The update's settings.
    pub settings: UpdateSettings,
    /// The learning rate of every optimiser step.
    pub schedule: LrSchedule,
    /// The ranks the step is spread over (rollouts and update passes shared out).
    pub collective: &'a dyn Collective,
}

/// What a step produced besides the model.
#[derive(Debug)]
pub struct StepOutput {
    /// Its metrics (TRL names, per-role rewards, flywheel counts, timings).
    pub row: Row,
    /// The flywheel's counts of the step.
    pub counts: FilterCounts,
    /// The rollouts the update trained on.
    pub recognition: Vec<RecognitionGroup>,
    /// The responder groups.
    pub expression: Vec<ExpressionGroup>,
    /// How many degenerate groups were replaced by fresh ones.
    pub resampled: usize,
}

impl Step<'_> {
    /// Step `step` (from 0) of self-play iteration `k` on `items`: rollouts by the policy as it
    /// is (π_old), admission of what they earn into `flywheel`, then μ optimiser steps. On a
    /// non-finite loss or gradient the model is returned as it was, with the error.
    pub fn run(
        &self,
        model: CausalLm,
        optim: &mut ModuleOptimizer,
        flywheel: &mut Flywheel,
        items: &StepItems,
        k: u32,
        step: u64,
    ) -> (CausalLm, std::result::Result<StepOutput, NonFinite>) {
        let (c, g, sp) = (self.config, &self.config.grpo, &self.config.selfplay);
        let t0 = Instant::now();
        let rollout_model = model.valid();
        let collective = Counted::new(self.collective);
        let own = ModelPolicy { model: &rollout_model, tok: self.tok, sampling: g.sampling(), score_rows: c.eval.batch_size, vectors: self.vectors };
        let policy = Sharded { inner: &own, collective: &collective };
        let mut recognition = recognise(&policy, &self.roles, &items.recognition, g.num_generations, c.seed, step);
        let generate_s = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let frozen = match (sp.rerecogniser, self.frozen) {
            (Rerecogniser::Reference, Some(m)) => {
                Some(ModelPolicy { model: m, tok: self.tok, sampling: g.sampling(), score_rows: c.eval.batch_size, vectors: None })
            }
            _ => None,
        };
        let frozen = frozen.as_ref().map(|f| Sharded { inner: f, collective: &collective });
        let rerecogniser: &dyn selfemo_selfplay::Policy = frozen.as_ref().map_or(&policy, |f| f);
        let alphas: &[f64] = sp.steering.as_ref().map_or(&[], |s| &s.alphas);
        let expression = respond(&policy, rerecogniser, &self.roles, &items.expression, g.num_generations, c.seed, step, alphas);
        let respond_s = t1.elapsed().as_secs_f64();
        let t2 = Instant::now();
        let mut counts = flywheel.admit(k, step + 1, &recognition, &expression, &sp.flywheel);
        let mut resampled = 0;
        if !self.reserve.is_empty() {
            let equal = |gr: &RecognitionGroup| gr.samples.iter().all(|s| (s.reward.total - gr.samples[0].reward.total).abs() <= 1e-12);
            let stale: Vec<usize> = (0..recognition.len()).filter(|i| equal(&recognition[*i])).collect();
            if !stale.is_empty() {
                let fresh_items: Vec<RecognitionItem> =
                    (0..stale.len()).map(|j| self.reserve[(step as usize * g.prompts_per_step + j) % self.reserve.len()].clone()).collect();
                let fresh = recognise(&policy, &self.roles, &fresh_items, g.num_generations, c.seed, step);
                counts.add(&flywheel.admit(k, step + 1, &fresh, &[], &sp.flywheel));
                resampled = stale.len();
                for (i, group) in stale.into_iter().zip(fresh) {
                    recognition[i] = group;
                }
            }
        }
        let groups = to_groups(&recognition, &expression);
        let score_s = t2.elapsed().as_secs_f64();
        drop(rollout_model); // π_old's weights, before the update's activations
        let t3 = Instant::now();
        let reference = if g.beta > 0.0 { self.frozen } else { None };
        let rollout_traffic = collective.traffic();
        let first = step as usize * g.num_iterations.max(1);
        let (model, stats) = update_on(&collective, model, reference, optim, &groups, &self.settings, &self.schedule, first);
        let stats = match stats {
            Ok(s) => s,
            Err(e) => return (model, Err(e)),
        };
        let update_s = t3.elapsed().as_secs_f64();
        let samples = || groups.iter().flat_map(|g| g.samples.iter().map(move |s| (g, s)));
        let rewards: Vec<f64> = samples().map(|(_, s)| s.reward).collect();
        let lengths: Vec<f64> = samples().map(|(_, s)| s.completion.len() as f64).collect();
        let clipped = samples().filter(|(_, s)| s.truncated).count() as f64 / lengths.len().max(1) as f64;
        let tokens: f64 = samples().map(|(g, s)| (g.prompt.len() + s.completion.len()) as f64).sum();
        let group_std = groups.iter().map(|g| mean_std(&g.samples.iter().map(|s| s.reward).collect::<Vec<_>>()).1).sum::<f64>() / groups.len().max(1) as f64;
        let seconds = generate_s + respond_s + score_s + update_s;
        let mut values = BTreeMap::from([
            ("loss".to_string(), stats.loss),
            ("reward".into(), mean_std(&rewards).0),
            ("reward_std".into(), group_std),
            ("frac_reward_zero_std".into(), stats.frac_reward_zero_std),
            ("kl".into(), stats.loss_stats.kl),
            ("entropy".into(), mean_std(&samples().flat_map(|(_, s)| s.entropies.iter().copied()).collect::<Vec<_>>()).0),
            ("clip_ratio/low_mean".into(), stats.loss_stats.clip_low),
            ("clip_ratio/high_mean".into(), stats.loss_stats.clip_high),
            ("completions/mean_length".into(), mean_std(&lengths).0),
            ("completions/clipped_ratio".into(), clipped),
            ("grad_norm".into(), stats.grad_norm),
            ("learning_rate".into(), stats.learning_rate),
            ("timing/generate".into(), generate_s),
            ("timing/respond".into(), respond_s),
            ("timing/score".into(), score_s),
            ("timing/update".into(), update_s),
            ("tokens_per_second".into(), tokens / seconds),
            ("selfplay/iteration".into(), f64::from(k)),
            ("selfplay/synthetic_prompts".into(), items.recognition.iter().filter(|i| i.synthetic).count() as f64),
        ]);
        if self.collective.size() > 1 {
            let all = collective.traffic();
            values.extend([
                ("comm/rollout_bytes".to_string(), rollout_traffic.bytes as f64),
                ("comm/rollout_seconds".into(), rollout_traffic.seconds),
                ("comm/update_bytes".into(), (all.bytes - rollout_traffic.bytes) as f64),
                ("comm/update_seconds".into(), all.seconds - rollout_traffic.seconds),
            ]);
        }
        values.extend(stats.importance_weight.map(|w| ("steering/is_weight/mean".to_string(), w)));
        values.extend(role_metrics(&recognition, &expression));
        values.extend(count_metrics(&counts));
        let row = Row { step: step + 1, values };
        (model, Ok(StepOutput { row, counts, recognition, expression, resampled }))
    }
}

/// The seconds of training a metrics row records: rollouts, scoring and the update.
pub fn step_seconds(row: &Row) -> f64 {
    ["timing/generate", "timing/respond", "timing/score", "timing/update"].iter().filter_map(|k| row.values.get(*k)).sum()
}

/// The emotion vectors of steered responder sampling, checked against the policy.
pub(crate) fn steering_vectors(c: &RunConfig, model: &CausalLm) -> Result<Option<EmotionVectors>> {
    let Some(st) = &c.selfplay.steering else { return Ok(None) };
    let v = EmotionVectors::load(&st.vectors).at(&st.vectors)?;
    if v.num_layers() != model.num_layers() {
        return Err(TrainError::Config(format!(
            "selfplay.steering.vectors: {} holds vectors for {} layers (model {}), the policy has {}",
            st.vectors.display(),
            v.num_layers(),
            v.model,
            model.num_layers()
        )));
    }
    Ok(Some(v))
}
