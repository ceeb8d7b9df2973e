//! The TOML run config. Every field has a documented default; unknown fields and bad values are
//! errors naming the field. GRPO knobs use TRL's `GRPOConfig` names so settings carry over.

use crate::evaluation::EvalMode;
use crate::loss::{Clip, LossType};
use crate::optim::{AdamWSettings, LrDecay};
use crate::splits::Batching;
use selfemo_datasets::sampling::LabelSampling;
use selfemo_datasets::{ContextSpan, Dataset, WindowAnchor};
use selfemo_model::SamplingConfig;
use selfemo_rewards::{RewardConfig, ScaleRewards};
use selfemo_selfplay::{RecogniserPrompt, SelfPlayConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Run name: the run folder is `<output_dir>/<name>` (required).
    pub name: String,
    /// Parent folder of run folders (default `runs`).
    #[serde(default = "default_output_dir")]
    pub output_dir: PathBuf,
    /// Seed of every random choice (default 0).
    #[serde(default)]
    pub seed: u64,
    /// `cpu`, `cuda[:i]` or `wgpu` (default `cpu`). Under an MPI launcher a bare `cuda` gives
    /// each rank its own GPU, `cuda:<rank on its node>`.
    #[serde(default = "default_device")]
    pub device: String,
    /// One process, one thread per device (default empty: `device` alone): `["cuda:0",
    /// "cuda:1"]` trains data parallel over them as MPI ranks would (rank r on `devices[r]`,
    /// a group never spans devices), the gradients summed by burn's all-reduce on CUDA (NCCL)
    /// and through memory elsewhere. Replaces `device`; not combined with an MPI launcher.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// The policy.
    #[serde(default)]
    pub model: ModelSection,
    /// The data.
    #[serde(default)]
    pub data: DataSection,
    /// The SELF-GRPO update.
    #[serde(default)]
    pub grpo: GrpoSection,
    /// Reward definition.
    #[serde(default)]
    pub rewards: RewardConfig,
    /// The recogniser prompt.
    #[serde(default)]
    pub prompt: RecogniserPrompt,
    /// Dev evaluation.
    #[serde(default)]
    pub eval: EvalSection,
    /// Optional SFT warm start before SELF-GRPO.
    #[serde(default)]
    pub warm_start: WarmStartSection,
    /// Self-play: iterations, the responder, re-recognition and the flywheel.
    #[serde(default)]
    pub selfplay: SelfPlayConfig,
}

/// SFT warm start on train targets before SELF-GRPO, so a small policy learns the output
/// contract and the label vocabulary before it is rewarded for them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WarmStartSection {
    /// SFT optimiser steps, 0 = no warm start (default 0).
    pub steps: usize,
    /// What the SFT completions are (default `label`).
    pub kind: WarmStartKind,
    /// `rationale` only: appended to the recogniser's user message when the policy explains a
    /// gold label; `{emotion}` is filled in.
    pub rationale_hint: String,
    /// Examples per step, drawn from the train targets that SELF-GRPO does not use (default 8).
    pub batch_size: usize,
    /// Passes each step's batch is split into, their gradients summed (default 1): memory, not
    /// maths. A data-parallel run rounds it up to a multiple of its ranks, each running its
    /// share of the passes.
    pub gradient_accumulation_steps: usize,
    /// Peak learning rate (default 1e-4).
    pub learning_rate: f64,
    /// How the rate moves over the warm start: `constant`, or `cosine` down to
    /// `min_lr_ratio` of the peak at its last step or at the end of its `minutes`, whichever
    /// comes first (default `constant`).
    pub lr_decay: LrDecay,
    /// The rate at the end of a `cosine` warm start as a share of the peak (default 0.1, as
    /// `grpo.min_lr_ratio`).
    pub min_lr_ratio: f64,
    /// How the examples are drawn by gold label (default `natural`) [RECON].
    pub label_sampling: LabelSampling,
    /// How examples form batches: `random` draws, or `dialogue` (a dialogue's targets
    /// together, so their shared lines run once in the batch's prefix tree; natural label
    /// proportions) (default `random`).
    pub batching: Batching,
    /// Evaluate on dev every n SFT steps, the best-dev model kept (default 0: only at the end).
    pub eval_every: usize,
    /// Stop the warm start once this many minutes of SFT have run (default 0: no limit; `steps`
    /// still bounds it): a wall-clock budget, for comparing recipes at equal cost.
    pub minutes: f64,
    /// With LoRA: merge the warm start's adapters into the weights at its end and give
    /// self-play fresh ones (B = 0, so the policy is unchanged), as pipelines that merge an SFT
    /// adapter before RL do, instead of training on the warm start's adapters (default false)
    /// [RECON].
    pub merge_lora: bool,
}

impl Default for WarmStartSection {
    fn default() -> Self {
        Self {
            steps: 0,
            kind: WarmStartKind::Label,
            rationale_hint: "\n\nThe answer is {emotion}. Explain in one short sentence why.".into(),
            batch_size: 8,
            gradient_accumulation_steps: 1,
            learning_rate: 1e-4,
            lr_decay: LrDecay::Constant,
            min_lr_ratio: 0.1,
            label_sampling: LabelSampling::Natural,
            batching: Batching::Random,
            eval_every: 0,
            minutes: 0.0,
            merge_lora: false,
        }
    }
}

/// The warm start's SFT completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarmStartKind {
    /// `{gold}</answer>` and the end-of-turn token: needs a `prompt.reply_prefix` ending with
    /// `<answer>` (the thought is given in the prompt).
    Label,
    /// `{rationale}</think><answer>{gold}</answer>` and the end-of-turn token, with rationales
    /// the policy writes for the gold label and keeps only when its label-free re-prediction
    /// agrees (EmoPrompt / STaR): needs a `prompt.reply_prefix` ending with `<think>`.
    Rationale,
}

fn default_output_dir() -> PathBuf {
    PathBuf::from("runs")
}
fn default_device() -> String {
    "cpu".into()
}

/// Which parameters train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum Trainable {
    /// Every parameter.
    All,
    /// Only the top `layers` decoder layers and the final norm (embedding and the rest frozen).
    TopLayers {
        /// How many of the last layers train.
        layers: usize,
    },
    /// LoRA adapters W + (α/r)·AB on the `targets` projections of every layer (Hu et al.
    /// 2021; B starts at 0 so the model is unchanged at step 0); everything else is frozen.
    /// The HF export merges them into the weights.
    Lora {
        /// r.
        rank: usize,
        /// α (the adapter is scaled by α / r).
        alpha: f64,
        /// Projection names, HF style (default: every projection of attention and MLP).
        #[serde(default = "default_lora_targets")]
        targets: Vec<String>,
    },
}

/// The projections LoRA can adapt.
pub const LORA_TARGETS: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

fn default_lora_targets() -> Vec<String> {
    LORA_TARGETS.iter().map(|s| s.to_string()).collect()
}

/// The policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// `default`, a .gguf file or an HF folder (default `default`).
    pub source: String,
    /// Keep only the first n layers, 0 = all (default 0; for tests).
    pub max_layers: usize,
    /// What trains (default: the top 2 layers, which fits a 2-core CPU).
    pub trainable: Trainable,
}

impl Default for ModelSection {
    fn default() -> Self {
        Self { source: "default".into(), max_layers: 0, trainable: Trainable::TopLayers { layers: 2 } }
    }
}

/// The data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSection {
    /// meld, emorynlp or iemocap (default meld).
    pub dataset: Dataset,
    /// Folder to read instead of data/ (required for IEMOCAP).
    pub path: Option<PathBuf>,
    /// Past turns shown with the target (default 8; InstructERC uses 20 at 7B scale).
    pub context_window: usize,
    /// Where a recognition prompt's window starts (default `sliding`; `block`: between
    /// `context_window` and twice that many past turns, so a dialogue's prompts share their
    /// lines in one prefix tree) [RECON].
    pub context_anchor: WindowAnchor,
    /// Prompt token budget; oldest turns are dropped to fit (default 256).
    pub max_prompt_tokens: usize,
    /// Train on the first n targets of the seeded shuffle, 0 = all (default 0): an epoch is then
    /// n / prompts_per_step steps, and the prompts cycle.
    pub train_limit: usize,
    /// How GRPO prompts (and dynamic sampling's refills) are drawn by gold label (default
    /// `natural`) [RECON].
    pub label_sampling: LabelSampling,
}

impl Default for DataSection {
    fn default() -> Self {
        Self {
            dataset: Dataset::Meld,
            path: None,
            context_window: 8,
            context_anchor: WindowAnchor::Sliding,
            max_prompt_tokens: 256,
            train_limit: 0,
            label_sampling: LabelSampling::Natural,
        }
    }
}

impl DataSection {
    /// The past turns a recognition prompt shows.
    pub fn context_span(&self) -> ContextSpan {
        ContextSpan { turns: self.context_window, anchor: self.context_anchor }
    }
}

/// SELF-GRPO settings (TRL names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpoSection {
    /// G, completions per prompt (default 4; DeepSeekMath uses 64, ERV 4).
    pub num_generations: usize,
    /// Prompts per optimiser step (default 4).
    pub prompts_per_step: usize,
    /// Rollout steps of the run (default 20); each takes μ (`num_iterations`) optimiser steps.
    /// 0 = no self-play: the warm start alone (SFT only).
    pub max_steps: usize,
    /// Peak learning rate (default 1e-5; ERV uses 1e-6 for full fine-tuning of larger models).
    pub learning_rate: f64,
    /// Rollout steps of linear warmup (default 0); the schedule counts optimiser steps, μ per
    /// rollout step.
    pub warmup_steps: usize,
    /// The learning rate of the run's last optimiser step as a share of the peak, reached by
    /// cosine decay (default 0.1).
    pub min_lr_ratio: f64,
    /// β, KL weight to the frozen reference (default 0.04, DeepSeekMath/TRL); 0 skips the
    /// reference. The reference is the policy as it enters SELF-GRPO, after any warm start (the
    /// SFT model, as in TRL and verl), saved in the run folder so a resumed run has the same one.
    pub beta: f64,
    /// ε_lo of the ratio clip (default 0.2, PPO).
    pub epsilon: f64,
    /// ε_hi of the ratio clip (default 0.2; DAPO's clip-higher uses 0.28).
    pub epsilon_high: f64,
    /// Advantage scaling: group, batch or none (default group).
    pub scale_rewards: ScaleRewards,
    /// Loss aggregation: grpo, bnpo, dr_grpo or dapo (default dapo, TRL's default).
    pub loss_type: LossType,
    /// μ, optimiser steps per rollout batch (default 1).
    pub num_iterations: usize,
    /// Micro-batches per optimiser step, their gradients summed (default 1): the same step
    /// with less memory.
    pub gradient_accumulation_steps: usize,
    /// Train on prefix trees: each GRPO micro-batch (and each SFT batch) runs as one
    /// tree-masked sequence in which what its sequences share (a group's prompt, a header)
    /// runs once; `false` runs padded rows, the prompt once per completion (default true).
    /// Both give the same loss and gradients up to float rounding.
    pub prefix_sharing: bool,
    /// Most tokens one forward/backward pass runs, a prompt counted once per group with
    /// prefix sharing: a micro-batch over it is split into several passes whose gradients add
    /// up (default 4096; 0 = no limit). Bounds memory for long prompts and completions.
    pub max_tree_tokens: usize,
    /// Groups whose rewards are all equal: keep (zero advantage, TRL) or drop (out of the loss,
    /// DAPO's filter without refilling) (default keep).
    pub degenerate_groups: crate::grpo::DegenerateGroups,
    /// Most tokens per completion (default 48).
    pub max_completion_length: usize,
    /// Leave completions cut at the length limit out of the loss (default false; DAPO: true).
    pub mask_truncated_completions: bool,
    /// Sampling temperature (default 1.0).
    pub temperature: f64,
    /// Nucleus mass (default 1.0).
    pub top_p: f64,
    /// Top-k, 0 = off (default 0).
    pub top_k: usize,
    /// Global gradient-norm clip, 0 = off (default 1.0, transformers' max_grad_norm).
    pub max_grad_norm: f64,
    /// AdamW constants (PyTorch defaults).
    #[serde(flatten)]
    pub adamw: AdamWSettings,
    /// Checkpoint every n steps (default 10); the last step is always saved.
    pub save_steps: usize,
}

impl Default for GrpoSection {
    fn default() -> Self {
        Self {
            num_generations: 4,
            prompts_per_step: 4,
            max_steps: 20,
            learning_rate: 1e-5,
            warmup_steps: 0,
            min_lr_ratio: 0.1,
            beta: 0.04,
            epsilon: 0.2,
            epsilon_high: 0.2,
            scale_rewards: ScaleRewards::Group,
            loss_type: LossType::Dapo,
            num_iterations: 1,
            gradient_accumulation_steps: 1,
            prefix_sharing: true,
            max_tree_tokens: 4096,
            degenerate_groups: crate::grpo::DegenerateGroups::Keep,
            max_completion_length: 48,
            mask_truncated_completions: false,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            max_grad_norm: 1.0,
            adamw: AdamWSettings::default(),
            save_steps: 10,
        }
    }
}

impl GrpoSection {
    /// Rollout sampling.
    pub fn sampling(&self) -> SamplingConfig {
        SamplingConfig { temperature: self.temperature, top_p: self.top_p, top_k: self.top_k, max_new_tokens: self.max_completion_length }
    }

    /// The learning rate of every optimiser step of the run: warmup, then cosine to the floor at
    /// the last of its max_steps × μ optimiser steps.
    pub fn schedule(&self) -> crate::optim::LrSchedule {
        let mu = self.num_iterations.max(1);
        crate::optim::LrSchedule { base: self.learning_rate, warmup: self.warmup_steps * mu, total: self.max_steps * mu, min_ratio: self.min_lr_ratio }
    }

    /// The update's settings; `pad` is the tokenizer's pad id, `importance_cap` C of steered samples.
    pub fn update_settings(&self, pad: u32, importance_cap: f64) -> crate::grpo::UpdateSettings {
        crate::grpo::UpdateSettings {
            clip: self.clip(),
            loss_type: self.loss_type,
            scale_rewards: self.scale_rewards,
            advantage_epsilon: 1e-4,
            max_completion_length: self.max_completion_length,
            mask_truncated_completions: self.mask_truncated_completions,
            temperature: self.sampling().logprob_temperature(),
            max_grad_norm: self.max_grad_norm,
            num_iterations: self.num_iterations,
            gradient_accumulation_steps: self.gradient_accumulation_steps,
            importance_cap,
            prefix_sharing: self.prefix_sharing,
            max_tree_tokens: self.max_tree_tokens,
            degenerate_groups: self.degenerate_groups,
            pad,
        }
    }

    /// Clip range and β.
    pub fn clip(&self) -> Clip {
        Clip { epsilon: self.epsilon, epsilon_high: self.epsilon_high, beta: self.beta }
    }
}

/// Dev evaluation before training, during the warm start and after each self-play iteration;
/// test evaluation of the best-dev model at the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSection {
    /// Dev targets evaluated, a stratified sample (each label's share kept), 0 = all (default 300).
    pub dev_limit: usize,
    /// How dev answers are read (default `score`: one pass, the cheap one).
    pub dev_mode: EvalMode,
    /// Greedy tokens per answer in generate mode (default 48).
    pub max_new_tokens: usize,
    /// Prompts per batch: generation rows, or score-mode tree rows (default 8).
    pub batch_size: usize,
    /// Test targets evaluated at the end, the first n of the split, 0 = all (default 0).
    pub test_limit: usize,
    /// The modes the test split is scored in (default both).
    pub test_modes: Vec<EvalMode>,
    /// Also report test score mode with a logit adjustment fitted on the best stage's dev
    /// scores (default false) [RECON].
    pub logit_adjustment: bool,
}

impl Default for EvalSection {
    fn default() -> Self {
        Self {
            dev_limit: 300,
            dev_mode: EvalMode::Score,
            max_new_tokens: 48,
            batch_size: 8,
            test_limit: 0,
            test_modes: vec![EvalMode::Score, EvalMode::Generate],
            logit_adjustment: false,
        }
    }
}

impl RunConfig {
    /// Reads and validates a TOML file; errors name the file and the field.
    pub fn load(path: &Path) -> Result<Self, String> {
        Self::load_with(path, &[])
    }

    /// [`load`](Self::load) with dotted `key=value` overrides applied to the file's table first
    /// (see [`crate::overrides`]); errors name the file, and the overrides when there are any.
    pub fn load_with(path: &Path, overrides: &[String]) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let config: RunConfig = if overrides.is_empty() {
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        } else {
            let mut table: toml::Table = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            crate::overrides::apply(&mut table, overrides).map_err(|e| format!("{}: {e}", path.display()))?;
            toml::Value::Table(table).try_into().map_err(|e| format!("{} with --set {}: {e}", path.display(), overrides.join(" --set ")))?
        };
        config.validate().map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(config)
    }

    /// Checks values and the relations between fields, naming them.
    pub fn validate(&self) -> Result<(), String> {
        let g = &self.grpo;
        if g.max_steps == 0 && self.warm_start.steps == 0 {
            return Err("grpo.max_steps is 0 and there is no warm start: nothing would train (set grpo.max_steps or warm_start.steps)".into());
        }
        let positive = [
            ("grpo.num_generations", g.num_generations),
            ("grpo.prompts_per_step", g.prompts_per_step),
            ("grpo.num_iterations", g.num_iterations),
            ("grpo.gradient_accumulation_steps", g.gradient_accumulation_steps),
            ("grpo.max_completion_length", g.max_completion_length),
            ("grpo.save_steps", g.save_steps),
            ("warm_start.batch_size", self.warm_start.batch_size),
            ("eval.batch_size", self.eval.batch_size),
            ("data.max_prompt_tokens", self.data.max_prompt_tokens),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be at least 1"));
        }
        if g.num_generations < 2 {
            return Err(format!("grpo.num_generations must be at least 2 for group-relative advantages, got {}", g.num_generations));
        }
        let finite = |name: &str, v: f64, ok: bool| if v.is_finite() && ok { Ok(()) } else { Err(format!("{name} is out of range: {v}")) };
        finite("grpo.learning_rate", g.learning_rate, g.learning_rate > 0.0)?;
        finite("grpo.beta", g.beta, g.beta >= 0.0)?;
        finite("grpo.epsilon", g.epsilon, g.epsilon > 0.0 && g.epsilon < 1.0)?;
        finite("grpo.epsilon_high", g.epsilon_high, g.epsilon_high > 0.0)?;
        finite("grpo.min_lr_ratio", g.min_lr_ratio, (0.0..=1.0).contains(&g.min_lr_ratio))?;
        finite("grpo.max_grad_norm", g.max_grad_norm, g.max_grad_norm >= 0.0)?;
        finite("grpo.adam_beta1", g.adamw.adam_beta1, (0.0..1.0).contains(&g.adamw.adam_beta1))?;
        finite("grpo.adam_beta2", g.adamw.adam_beta2, (0.0..1.0).contains(&g.adamw.adam_beta2))?;
        finite("grpo.adam_epsilon", g.adamw.adam_epsilon, g.adamw.adam_epsilon > 0.0)?;
        finite("grpo.weight_decay", g.adamw.weight_decay, g.adamw.weight_decay >= 0.0)?;
        g.sampling().validate().map_err(|e| format!("grpo.{e}"))?;
        finite("warm_start.learning_rate", self.warm_start.learning_rate, self.warm_start.learning_rate > 0.0)?;
        let (kind, needs) = match self.warm_start.kind {
            WarmStartKind::Label => ("label", "<answer>"),
            WarmStartKind::Rationale => ("rationale", "<think>"),
        };
        if self.warm_start.steps > 0 && !self.prompt.reply_prefix.trim_end().ends_with(needs) {
            return Err(format!("warm_start (kind {kind}) needs prompt.reply_prefix to end with {needs}, got {:?}", self.prompt.reply_prefix));
        }
        self.rewards.validate()?;
        if g.degenerate_groups == crate::grpo::DegenerateGroups::Consistency && self.rewards.weights.consistency != 0.0 {
            return Err(format!(
                "grpo.degenerate_groups = \"consistency\" breaks ties only when rewards.weights.consistency = 0 (got {}): with w_g > 0, unequal C_i already make unequal rewards",
                self.rewards.weights.consistency
            ));
        }
        match &self.model.trainable {
            Trainable::TopLayers { layers: 0 } => return Err("model.trainable.layers must be at least 1".into()),
            Trainable::Lora { rank: 0, .. } => return Err("model.trainable.rank must be at least 1".into()),
            Trainable::Lora { alpha, .. } => finite("model.trainable.alpha", *alpha, *alpha > 0.0)?,
            _ => {}
        }
        if let Trainable::Lora { targets, .. } = &self.model.trainable
            && let Some(t) = targets.iter().find(|t| !LORA_TARGETS.contains(&t.as_str()))
        {
            return Err(format!("model.trainable.targets: unknown projection {t:?} (one of {})", LORA_TARGETS.join(", ")));
        }
        selfemo_model::parse_device(&self.device).map_err(|e| format!("device: {e}"))?;
        let mut gpus = Vec::new();
        for (i, d) in self.devices.iter().enumerate() {
            let device = selfemo_model::parse_device(d).map_err(|e| format!("devices[{i}]: {e}"))?;
            if d.trim().to_ascii_lowercase().starts_with("cuda") {
                if gpus.contains(&device) {
                    return Err(format!("devices[{i}]: {d:?} is already in the list (NCCL gives each GPU one rank)"));
                }
                gpus.push(device);
            }
        }
        self.selfplay.validate()?;
        finite("warm_start.minutes", self.warm_start.minutes, self.warm_start.minutes >= 0.0)?;
        finite("warm_start.min_lr_ratio", self.warm_start.min_lr_ratio, (0.0..=1.0).contains(&self.warm_start.min_lr_ratio))?;
        if self.warm_start.merge_lora && !(self.warm_start.steps > 0 && matches!(self.model.trainable, Trainable::Lora { .. })) {
            return Err("warm_start.merge_lora merges the warm start's LoRA adapters: it needs warm_start.steps > 0 and model.trainable.kind = \"lora\"".into());
        }
        if self.warm_start.batching == Batching::Dialogue && self.warm_start.label_sampling != LabelSampling::Natural {
            return Err("warm_start.batching = \"dialogue\" keeps each dialogue's targets together, so it needs warm_start.label_sampling = \"natural\"".into());
        }
        if self.eval.test_modes.is_empty() {
            return Err("eval.test_modes must name at least one mode (score, generate)".into());
        }
        if self.eval.logit_adjustment && self.eval.dev_mode != EvalMode::Score {
            return Err("eval.logit_adjustment is fitted on score-mode dev log-probs: it needs eval.dev_mode = \"score\"".into());
        }
        if self.grpo.max_steps > 0 && self.selfplay.iterations > self.grpo.max_steps {
            return Err(format!("selfplay.iterations ({}) must not exceed grpo.max_steps ({})", self.selfplay.iterations, self.grpo.max_steps));
        }
        Ok(())
    }

    /// The update's settings of this run (C from `selfplay.steering`, 1 without steering).
    pub fn update_settings(&self, pad: u32) -> crate::grpo::UpdateSettings {
        self.grpo.update_settings(pad, self.selfplay.steering.as_ref().map_or(1.0, |s| s.importance_cap))
    }

    /// The recogniser templates as score mode uses them: the run's own, with a reply prefix
    /// that ends where the label goes (the run's when it ends with `<answer>`, else the
    /// re-recogniser's, which must).
    pub fn score_template(&self) -> RecogniserPrompt {
        let mut t = self.prompt.clone();
        if !t.reply_prefix.trim_end().ends_with("<answer>") {
            t.reply_prefix = self.selfplay.rerecognition_prefix.clone();
        }
        t
    }

    /// The run folder.
    pub fn run_dir(&self) -> PathBuf {
        self.output_dir.join(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_takes_the_defaults() {
        let c: RunConfig = toml::from_str("name = \"x\"").unwrap();
        assert_eq!(c.grpo.num_generations, 4);
        assert_eq!(c.grpo.adamw.adam_epsilon, 1e-8);
        c.validate().unwrap();
    }

    #[test]
    fn trl_names_and_enums_parse() {
        let c: RunConfig = toml::from_str(
            "name = \"x\"\n[grpo]\nnum_generations = 8\nbeta = 0.0\nepsilon_high = 0.28\nscale_rewards = \"none\"\nloss_type = \"dr_grpo\"\n\
             adam_beta2 = 0.99\nweight_decay = 0.1\n[model]\ntrainable = { kind = \"all\" }\n",
        )
        .unwrap();
        assert_eq!((c.grpo.num_generations, c.grpo.loss_type, c.grpo.scale_rewards), (8, LossType::DrGrpo, ScaleRewards::None));
        assert_eq!(c.grpo.adamw.adam_beta2, 0.99);
        assert_eq!(c.model.trainable, Trainable::All);
    }

    #[test]
    fn bad_configs_name_the_field() {
        let err = |t: &str| match toml::from_str::<RunConfig>(t) {
            Err(e) => e.to_string(),
            Ok(c) => c.validate().unwrap_err(),
        };
        assert!(err("name = \"x\"\n[grpo]\nnum_generation = 8").contains("unknown field `num_generation`"));
        assert!(err("name = \"x\"\n[grpo]\nloss_type = \"ppo\"").contains("unknown variant `ppo`"));
        assert!(err("name = \"x\"\n[grpo]\nnum_generations = 1").contains("grpo.num_generations"));
        assert!(err("name = \"x\"\n[grpo]\ntop_p = 0.0").contains("grpo.top_p"));
        assert!(err("name = \"x\"\n[grpo]\nlearning_rate = -1.0").contains("grpo.learning_rate"));
        assert!(err("name = \"x\"\ndevice = \"tpu\"").contains("device"));
        assert!(err("name = \"x\"\n[rewards]\nlambda = -1.0").contains("rewards.lambda"));
        assert!(err("[grpo]\nbeta = 0.1").contains("missing field `name`"));
        assert!(err("name = \"x\"\n[model]\ntrainable = { kind = \"lora\", rank = 0, alpha = 16.0 }").contains("model.trainable.rank"));
        assert!(
            err("name = \"x\"\n[prompt]\nreply_prefix = \"<answer>\"\n[warm_start]\nsteps = 4\nmerge_lora = true").contains("warm_start.merge_lora"),
            "top layers have no adapters"
        );
        assert!(
            err("name = \"x\"\n[model]\ntrainable = { kind = \"lora\", rank = 4, alpha = 8.0 }\n[warm_start]\nmerge_lora = true")
                .contains("warm_start.merge_lora"),
            "no warm start, nothing to merge"
        );
        assert!(
            err("name = \"x\"\n[model]\ntrainable = { kind = \"lora\", rank = 8, alpha = 16.0, targets = [\"qproj\"] }")
                .contains("unknown projection \"qproj\"")
        );
        assert!(err("name = \"x\"\n[grpo]\ngradient_accumulation_steps = 0").contains("grpo.gradient_accumulation_steps"));
        assert!(err("name = \"x\"\n[warm_start]\nsteps = 4").contains("warm_start (kind label) needs prompt.reply_prefix to end with <answer>"));
        assert!(
            err("name = \"x\"\n[prompt]\nreply_prefix = \"<answer>\"\n[warm_start]\nsteps = 4\nkind = \"rationale\"")
                .contains("needs prompt.reply_prefix to end with <think>")
        );
        toml::from_str::<RunConfig>("name = \"x\"\n[warm_start]\nsteps = 4\nkind = \"rationale\"").unwrap().validate().unwrap();
        assert!(err("name = \"x\"\n[selfplay]\niterations = 0").contains("selfplay.iterations"));
        assert!(err("name = \"x\"\n[selfplay]\nsynthetic_share = 2.0").contains("selfplay.synthetic_share"));
        assert!(err("name = \"x\"\n[selfplay]\nrerecognition_prefix = \"<think>\"").contains("selfplay.rerecognition_prefix"));
        assert!(err("name = \"x\"\n[selfplay.flywheel]\nmax_per_source = 0").contains("selfplay.flywheel.max_per_source"));
        assert!(err("name = \"x\"\n[selfplay.flywheel]\ntau = 1.0").contains("unknown field `tau`"));
        assert!(err("name = \"x\"\n[grpo]\ndegenerate_groups = \"consistency\"").contains("rewards.weights.consistency = 0"));
        toml::from_str::<RunConfig>("name = \"x\"\n[grpo]\ndegenerate_groups = \"consistency\"\n[rewards.weights]\nconsistency = 0.0")
            .unwrap()
            .validate()
            .unwrap();
    }

    #[test]
    fn lora_defaults_to_every_projection() {
        let c: RunConfig = toml::from_str("name = \"x\"\n[model]\ntrainable = { kind = \"lora\", rank = 8, alpha = 16.0 }").unwrap();
        c.validate().unwrap();
        assert_eq!(c.model.trainable, Trainable::Lora { rank: 8, alpha: 16.0, targets: LORA_TARGETS.iter().map(|s| s.to_string()).collect() });
    }
}
