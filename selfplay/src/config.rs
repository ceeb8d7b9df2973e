//! The `[selfplay]` section of a run: iterations, the responder, re-recognition and the
//! flywheel. Every default is [RECON] (ours, not the paper's).

use crate::flywheel::FlywheelConfig;
use crate::items::TargetEmotion;
use crate::judge::JudgePrompt;
use crate::prompts::ResponderPrompt;
use selfemo_datasets::sampling::LabelSampling;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Steered responder sampling (the Emotion Vectors seed): sample j of each responder group is
/// steered toward e* with α = `alphas[j mod len]`, for diverse trajectories at no training cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SteeringConfig {
    /// Emotion vectors of this model (`selfemo steer extract`); emotions without a vector
    /// (neutral) are sampled unsteered.
    pub vectors: PathBuf,
    /// The α of each sample, cycled over the G samples (e.g. `[0.0, 1.0, 2.0, 4.0]`).
    pub alphas: Vec<f64>,
    /// C of the truncated importance weight min(π_old/π_steer, C) that scales a steered
    /// sample's policy-gradient term per token, since π_steer, not π_old, drew it (default 1.0;
    /// truncated importance sampling as in verl's TIS).
    #[serde(default = "default_importance_cap")]
    pub importance_cap: f64,
}

fn default_importance_cap() -> f64 {
    1.0
}

/// Who re-recognises the responder's turns [RECON].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rerecogniser {
    /// The policy being trained (one model plays every role).
    #[default]
    Policy,
    /// The frozen policy as it entered self-play (after any warm start).
    Reference,
}

/// How self-play runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelfPlayConfig {
    /// K: self-play iterations; the run's `grpo.max_steps` are split evenly over them, and each
    /// ends with a dev evaluation and hands its kept synthetic turns to the next (default 2).
    pub iterations: usize,
    /// Expression items per step: real train turns the responder answers, G samples each,
    /// trained beside the recogniser groups (default 2; 0 = the recogniser role only).
    pub responder_prompts_per_step: usize,
    /// Largest share of each step's recognition prompts drawn from kept synthetic turns of
    /// earlier iterations, in [0, 1] (default 0.5). Each turn is used once per iteration; once
    /// they run out, real prompts fill the steps.
    pub synthetic_share: f64,
    /// Reply prefix of the re-recogniser; the label is scored right after it, so it must end
    /// with `<answer>` (default `<think>I read the last line in context.</think><answer>`).
    pub rerecognition_prefix: String,
    /// Responder templates.
    pub responder: ResponderPrompt,
    /// Where e* comes from: `next_turn` (y_{t+1}), `uniform` or `inverse_frequency` (default
    /// `next_turn`).
    pub target_emotion: TargetEmotion,
    /// Who re-recognises the responder's turns: `policy` (the policy being trained) or
    /// `reference` (the frozen policy that entered self-play, which the responder cannot drift
    /// along with) (default `policy`).
    pub rerecogniser: Rerecogniser,
    /// Keep-rules.
    pub flywheel: FlywheelConfig,
    /// Passes of SFT, at the start of each iteration k ≥ 2, over the recognition rows iteration
    /// k−1 kept, on their own completions (rejection-sampling fine-tuning on the policy's
    /// verified answers; default 1.0; 0 = the kept rows are only logged).
    pub sft_epochs: f64,
    /// How those SFT examples are drawn from the kept rows by gold label (default `natural`:
    /// the rows in order, so the replay leans to the labels the policy already gets right;
    /// `balanced` gives every kept label the same share, `sqrt` is between) [RECON].
    pub sft_label_sampling: LabelSampling,
    /// Examples per SFT step (default 8).
    pub sft_batch_size: usize,
    /// Learning rate of those SFT steps (default 1e-4).
    pub sft_learning_rate: f64,
    /// The judge that gives the explanation reward its per-sentence emotions (when
    /// `rewards.weights.explanation` > 0).
    pub judge: JudgePrompt,
    /// Steered responder sampling (default: none).
    pub steering: Option<SteeringConfig>,
}

impl Default for SelfPlayConfig {
    fn default() -> Self {
        Self {
            iterations: 2,
            responder_prompts_per_step: 2,
            synthetic_share: 0.5,
            rerecognition_prefix: "<think>I read the last line in context.</think><answer>".into(),
            responder: ResponderPrompt::default(),
            target_emotion: TargetEmotion::NextTurn,
            rerecogniser: Rerecogniser::Policy,
            flywheel: FlywheelConfig::default(),
            sft_epochs: 1.0,
            sft_label_sampling: LabelSampling::Natural,
            sft_batch_size: 8,
            sft_learning_rate: 1e-4,
            judge: JudgePrompt::default(),
            steering: None,
        }
    }
}

impl SelfPlayConfig {
    /// Checks values, naming the field at fault.
    pub fn validate(&self) -> Result<(), String> {
        if self.iterations == 0 {
            return Err("selfplay.iterations must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.synthetic_share) {
            return Err(format!("selfplay.synthetic_share must be in [0, 1], got {}", self.synthetic_share));
        }
        if !self.rerecognition_prefix.trim_end().ends_with("<answer>") {
            return Err(format!("selfplay.rerecognition_prefix must end with <answer> (the label is scored after it), got {:?}", self.rerecognition_prefix));
        }
        if !(self.sft_epochs >= 0.0 && self.sft_epochs.is_finite()) {
            return Err(format!("selfplay.sft_epochs must be a finite number >= 0, got {}", self.sft_epochs));
        }
        if self.sft_batch_size == 0 {
            return Err("selfplay.sft_batch_size must be at least 1".into());
        }
        if !(self.sft_learning_rate > 0.0 && self.sft_learning_rate.is_finite()) {
            return Err(format!("selfplay.sft_learning_rate must be > 0, got {}", self.sft_learning_rate));
        }
        if let Some(s) = &self.steering
            && (s.alphas.is_empty() || s.alphas.iter().any(|a| !a.is_finite()))
        {
            return Err(format!("selfplay.steering.alphas must be a non-empty list of finite numbers, got {:?}", s.alphas));
        }
        if let Some(s) = &self.steering
            && !(s.importance_cap > 0.0 && s.importance_cap.is_finite())
        {
            return Err(format!("selfplay.steering.importance_cap must be > 0, got {}", s.importance_cap));
        }
        self.flywheel.validate()
    }
}
