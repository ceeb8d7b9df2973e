//! The `[selfplay]` section of a run: iterations, the responder, re-recognition and the
//! flywheel. Every default is [RECON] (ours, not the paper's).

use crate::flywheel::FlywheelConfig;
use crate::prompts::ResponderPrompt;
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
    /// earlier iterations, in [0, 1] (default 0.5).
    pub synthetic_share: f64,
    /// Reply prefix of the re-recogniser; the label is scored right after it, so it must end
    /// with `<answer>` (default `<think>I read the last line in context.</think><answer>`).
    pub rerecognition_prefix: String,
    /// Responder templates.
    pub responder: ResponderPrompt,
    /// Keep-rules.
    pub flywheel: FlywheelConfig,
    /// SFT steps at the start of each iteration k ≥ 2 on the recognition rows iteration k−1
    /// kept (their own completions: the kept rationales), 8 per step (default 0 = off).
    pub sft_steps: usize,
    /// Learning rate of those SFT steps (default 1e-4).
    pub sft_learning_rate: f64,
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
            flywheel: FlywheelConfig::default(),
            sft_steps: 0,
            sft_learning_rate: 1e-4,
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
        if !(self.sft_learning_rate > 0.0 && self.sft_learning_rate.is_finite()) {
            return Err(format!("selfplay.sft_learning_rate must be > 0, got {}", self.sft_learning_rate));
        }
        if let Some(s) = &self.steering
            && (s.alphas.is_empty() || s.alphas.iter().any(|a| !a.is_finite()))
        {
            return Err(format!("selfplay.steering.alphas must be a non-empty list of finite numbers, got {:?}", s.alphas));
        }
        self.flywheel.validate()
    }
}
