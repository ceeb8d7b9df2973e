//! Optimiser pieces with PyTorch semantics: AdamW with every constant explicit, global-norm
//! gradient clipping (torch's `clip_grad_norm_`, not burn's per-tensor clipping), warmup + cosine.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// AdamW constants, with TRL/transformers names and PyTorch defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamWSettings {
    /// β1 (default 0.9).
    pub adam_beta1: f64,
    /// β2 (default 0.999).
    pub adam_beta2: f64,
    /// ε (default 1e-8, PyTorch's; burn's own default is 1e-5).
    pub adam_epsilon: f64,
    /// Decoupled weight decay (default 0.0, transformers' TrainingArguments; burn's is 1e-4).
    pub weight_decay: f64,
}

impl Default for AdamWSettings {
    fn default() -> Self {
        Self { adam_beta1: 0.9, adam_beta2: 0.999, adam_epsilon: 1e-8, weight_decay: 0.0 }
    }
}

impl AdamWSettings {
    /// The burn optimiser, with no clipping of its own (see [`clip_global_norm`]).
    pub fn build(&self) -> ModuleOptimizer {
        AdamWConfig::new()
            .with_beta_1(self.adam_beta1 as f32)
            .with_beta_2(self.adam_beta2 as f32)
            .with_epsilon(self.adam_epsilon as f32)
            .with_weight_decay(self.weight_decay as f32)
            .init()
    }
}

/// Learning rate at optimiser step `step` (0-based) of `total`: linear warmup over `warmup`
/// steps from 0, then cosine decay to `min_ratio · base` at the last step.
pub fn learning_rate(step: usize, total: usize, warmup: usize, base: f64, min_ratio: f64) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let decay_steps = total.saturating_sub(warmup).max(1);
    let progress = ((step - warmup) as f64 / decay_steps as f64).min(1.0);
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    base * (min_ratio + (1.0 - min_ratio) * cosine)
}

/// Sums the squared gradients of every float parameter.
struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    total: f64,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            self.total += g.powf_scalar(2.0).sum().into_scalar::<f64>();
        }
    }
}

/// Multiplies every float parameter's gradient by `scale`.
struct Scale<'a> {
    grads: &'a mut GradientsParams,
    scale: f64,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register::<D>(param.id, g * self.scale);
        }
    }
}

/// The global L2 norm of all gradients, ‖g‖ = sqrt(Σ_p Σ g_p²).
pub fn global_norm<M: Module>(model: &M, grads: &GradientsParams) -> f64 {
    let mut v = SquaredNorm { grads, total: 0.0 };
    model.visit(&mut v);
    v.total.sqrt()
}

/// Scales all gradients by max_norm / (‖g‖ + 1e-6) when ‖g‖ > max_norm (torch's
/// `clip_grad_norm_`); returns ‖g‖ before clipping. `max_norm` ≤ 0 turns clipping off.
pub fn clip_global_norm<M: Module>(model: &M, grads: &mut GradientsParams, max_norm: f64) -> f64 {
    let norm = global_norm(model, grads);
    if norm.is_finite() && max_norm > 0.0 && norm > max_norm {
        model.visit(&mut Scale { grads, scale: max_norm / (norm + 1e-6) });
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;

    use burn::tensor::Device;
    use selfemo_model::{Architecture, CausalLm, ModelConfig, completion_logprobs};

    #[test]
    fn global_norm_clipping_scales_every_gradient_to_the_cap() {
        let model = CausalLm::random(&ModelConfig::tiny(Architecture::Qwen3), 5, &Device::flex().autodiff());
        let lp = completion_logprobs(&model, &[vec![1, 2, 3]], &[vec![4, 5]], 0, 1.0);
        let mut grads = GradientsParams::from_grads(lp.sum().backward(), &model);
        let before = global_norm(&model, &grads);
        let embed = grads.get::<2>(model.model.embed_tokens.weight.id).unwrap();
        let expected_embed = embed.clone().powf_scalar(2.0).sum().into_scalar::<f64>();
        assert!(before > 0.1 && expected_embed > 0.0 && expected_embed < before * before);
        assert_eq!(clip_global_norm(&model, &mut grads, before * 2.0), before, "below the cap: untouched");
        assert_eq!(global_norm(&model, &grads), before);
        clip_global_norm(&model, &mut grads, 0.1);
        assert!((global_norm(&model, &grads) - 0.1).abs() < 1e-5);
        let scaled = grads.get::<2>(model.model.embed_tokens.weight.id).unwrap();
        let off = (scaled - embed * (0.1 / (before + 1e-6))).abs().max().into_scalar::<f64>();
        assert!(off < 1e-7, "every gradient scaled by the same factor: {off}");
    }

    #[test]
    fn warmup_then_cosine() {
        assert_eq!(learning_rate(0, 10, 2, 1.0, 0.0), 0.5);
        assert_eq!(learning_rate(1, 10, 2, 1.0, 0.0), 1.0);
        assert_eq!(learning_rate(2, 10, 2, 1.0, 0.0), 1.0);
        assert!((learning_rate(6, 10, 2, 1.0, 0.0) - 0.5).abs() < 1e-12);
        assert!(learning_rate(10, 10, 2, 1.0, 0.1) - 0.1 < 1e-12);
        assert_eq!(learning_rate(3, 4, 0, 2.0, 0.0), 2.0 * 0.5 * (1.0 + (std::f64::consts::PI * 0.75).cos()));
    }
}
