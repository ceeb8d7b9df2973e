//! Optimiser pieces with PyTorch semantics: AdamW with every constant explicit, global-norm
//! gradient clipping (torch's `clip_grad_norm_`, not burn's per-tensor clipping), warmup + cosine.

use crate::adamw::FusedAdamW;
use crate::collective::Collective;
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::distributed::{ReduceOperation, all_reduce};
use burn::tensor::{Device, Tensor, TensorData};
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
    /// The optimiser ([`FusedAdamW`]: burn's AdamW, fused on the CPU), with no clipping of
    /// its own (see [`clip_global_norm`]).
    pub fn build(&self) -> ModuleOptimizer {
        ModuleOptimizer::from(FusedAdamW::new(self.adam_beta1 as f32, self.adam_beta2 as f32, self.adam_epsilon as f32, self.weight_decay as f32))
    }
}

/// Warmup then cosine decay, over the run's optimiser steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    /// Peak learning rate.
    pub base: f64,
    /// Optimiser steps of linear warmup: step s < warmup runs at base·(s+1)/warmup.
    pub warmup: usize,
    /// Optimiser steps of the run.
    pub total: usize,
    /// The last step's rate as a share of the peak.
    pub min_ratio: f64,
}

impl LrSchedule {
    /// The same rate at every step.
    pub fn constant(rate: f64) -> Self {
        Self { base: rate, warmup: 0, total: 1, min_ratio: 1.0 }
    }

    /// The rate of optimiser step `step` (from 0): after the warmup, cosine from the peak at
    /// step `warmup` down to min_ratio·base at the last step, `total` − 1 (the peak throughout
    /// when only one step follows the warmup).
    pub fn at(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.base * (step + 1) as f64 / self.warmup as f64;
        }
        let decay_steps = self.total.saturating_sub(self.warmup + 1);
        let progress = if decay_steps == 0 { 0.0 } else { (step - self.warmup) as f64 / decay_steps as f64 };
        LrDecay::Cosine.rate(self.base, self.min_ratio, progress)
    }
}

/// How an SFT pass's learning rate moves from its peak over the pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrDecay {
    /// The peak throughout.
    #[default]
    Constant,
    /// Cosine from the peak down to `min_ratio` of it at the end of the pass.
    Cosine,
}

impl LrDecay {
    /// The rate at `progress` through a pass (0 = its start, 1 = its end; clamped), from the
    /// peak `base` to the floor `min_ratio`·`base`.
    pub fn rate(self, base: f64, min_ratio: f64, progress: f64) -> f64 {
        match self {
            Self::Constant => base,
            Self::Cosine => {
                let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress.clamp(0.0, 1.0)).cos());
                base * (min_ratio + (1.0 - min_ratio) * cosine)
            }
        }
    }
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

/// Appends every trainable float parameter's gradient to `values` (zeros where `grads` has
/// none) and 1 or 0 to `present`, in the model's visit order.
struct Flatten<'a> {
    grads: &'a GradientsParams,
    values: Vec<f32>,
    present: Vec<f32>,
}

impl ModuleVisitor for Flatten<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        if !value.is_require_grad() {
            return;
        }
        match self.grads.get::<D>(param.id) {
            Some(g) => {
                self.values.extend(g.try_to_vec_as::<f32>().expect("the backend reads back its own gradient"));
                self.present.push(1.0);
            }
            None => {
                self.values.extend(std::iter::repeat_n(0.0, value.shape().num_elements()));
                self.present.push(0.0);
            }
        }
    }
}

/// Puts [`Flatten`]'s values back as gradients, in the parameters' dtype, for every trainable
/// parameter that some rank had a gradient of.
struct Unflatten<'a> {
    grads: &'a mut GradientsParams,
    values: &'a [f32],
    present: std::slice::Iter<'a, f32>,
}

impl ModuleVisitor for Unflatten<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        if !value.is_require_grad() {
            return;
        }
        let shape = value.shape();
        let (mine, rest) = self.values.split_at(shape.num_elements());
        self.values = rest;
        if *self.present.next().expect("one flag per trainable parameter") > 0.0 {
            let summed = Tensor::<D>::from_data(TensorData::new(mine.to_vec(), shape), &value.device()).cast(value.dtype());
            self.grads.remove::<D>(param.id);
            self.grads.register::<D>(param.id, summed);
        }
    }
}

/// Replaces each rank's gradients by their sum over all ranks (one all-reduce of every
/// trainable parameter's gradient, summed in f32), so that every rank then takes the same
/// optimiser step. A rank whose passes gave a parameter no gradient adds zeros. Ranks that are
/// threads over a device group ([`Collective::device_group`]) sum on the devices, a burn
/// all-reduce per parameter (NCCL on CUDA); the others through [`Collective::sum_f32`].
pub fn sum_gradients<M: Module>(collective: &dyn Collective, model: &M, grads: &mut GradientsParams) {
    if collective.size() == 1 {
        return;
    }
    if let Some(devices) = collective.device_group() {
        return sum_on_devices(collective, devices, model, grads);
    }
    let mut flat = Flatten { grads, values: Vec::new(), present: Vec::new() };
    model.visit(&mut flat);
    let Flatten { mut values, present, .. } = flat;
    let n = values.len();
    values.extend(present); // the flags travel in the same all-reduce
    collective.sum_f32(&mut values);
    let present = values.split_off(n);
    model.visit(&mut Unflatten { grads, values: &values, present: present.iter() });
}

/// [`sum_gradients`] on a device group: the flags of which parameters have a gradient are
/// summed first (on the host), so that every rank all-reduces the same parameters in the same
/// order, a missing gradient as zeros.
fn sum_on_devices<M: Module>(collective: &dyn Collective, devices: &[Device], model: &M, grads: &mut GradientsParams) {
    let mut flags = Presence { grads, present: Vec::new() };
    model.visit(&mut flags);
    let mut present = flags.present;
    collective.sum_f32(&mut present);
    let started = std::time::Instant::now();
    let mut reduce = DeviceSum { grads, devices, present: present.iter(), bytes: 0 };
    model.visit(&mut reduce);
    let bytes = reduce.bytes;
    collective.note_device_traffic(bytes, started.elapsed().as_secs_f64());
}

/// 1 for each trainable parameter this rank has a gradient of, else 0, in visiting order.
struct Presence<'a> {
    grads: &'a GradientsParams,
    present: Vec<f32>,
}

impl ModuleVisitor for Presence<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if param.val().is_require_grad() {
            self.present.push(if self.grads.get::<D>(param.id).is_some() { 1.0 } else { 0.0 });
        }
    }
}

/// Replaces the gradient of every trainable parameter that some rank has one of by its sum
/// over the device group, counting the bytes this rank contributes.
struct DeviceSum<'a> {
    grads: &'a mut GradientsParams,
    devices: &'a [Device],
    present: std::slice::Iter<'a, f32>,
    bytes: u64,
}

impl ModuleVisitor for DeviceSum<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        if !value.is_require_grad() || *self.present.next().expect("one flag per trainable parameter") == 0.0 {
            return;
        }
        let mine =
            self.grads.remove::<D>(param.id).unwrap_or_else(|| Tensor::<D>::zeros(value.shape(), &value.device().without_autodiff()).cast(value.dtype()));
        self.bytes += (mine.shape().num_elements() * mine.dtype().size()) as u64;
        let summed = all_reduce(mine, ReduceOperation::Sum, self.devices.to_vec()).resolve();
        self.grads.register::<D>(param.id, summed);
    }
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

    /// ‖g‖ over a model's gradients (most of them transposed views) equals the definition
    /// evaluated in f64 on each gradient's values read back, to f32 summation.
    #[test]
    fn global_norm_is_the_root_of_every_squared_gradient_value() {
        let model = CausalLm::random(&ModelConfig::tiny(Architecture::Llama), 7, &Device::flex().autodiff());
        let lp = completion_logprobs(&model, &[vec![1, 2, 3]], &[vec![4, 5, 6]], 0, 1.0);
        let grads = GradientsParams::from_grads(lp.sum().backward(), &model);
        struct Naive<'a>(&'a GradientsParams, f64, usize);
        impl ModuleVisitor for Naive<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                if let Some(g) = self.0.get::<D>(param.id) {
                    self.1 += g.to_data().iter::<f32>().map(|x| f64::from(x) * f64::from(x)).sum::<f64>();
                    self.2 += 1;
                }
            }
        }
        let mut naive = Naive(&grads, 0.0, 0);
        model.visit(&mut naive);
        assert!(naive.2 > 5 && naive.1 > 0.0);
        let norm = global_norm(&model, &grads);
        assert!((norm - naive.1.sqrt()).abs() <= 1e-6 * norm, "{norm} vs {}", naive.1.sqrt());
    }

    #[test]
    fn warmup_then_cosine_down_to_the_floor_at_the_last_step() {
        // Hand values: 2 warmup steps, then cos over the 3 intervals between steps 2 and 5,
        // 0.1 + 0.9·(1 + cos(kπ/3))/2 = 1, 0.775, 0.325, 0.1.
        let s = LrSchedule { base: 1.0, warmup: 2, total: 6, min_ratio: 0.1 };
        let rates: Vec<f64> = (0..6).map(|k| s.at(k)).collect();
        for (got, want) in rates.iter().zip([0.5, 1.0, 1.0, 0.775, 0.325, 0.1]) {
            assert!((got - want).abs() < 1e-12, "{rates:?}");
        }
        // No warmup, 5 steps at peak 2 to a floor of 0: cos(kπ/4) gives 2, 1.7071, 1, 0.2929, 0.
        let s = LrSchedule { base: 2.0, warmup: 0, total: 5, min_ratio: 0.0 };
        for (k, want) in [2.0, 1.707_106_781_186_547_6, 1.0, 0.292_893_218_813_452_5, 0.0].into_iter().enumerate() {
            assert!((s.at(k) - want).abs() < 1e-12, "step {k}: {}", s.at(k));
        }
        assert_eq!(LrSchedule { base: 1.0, warmup: 0, total: 1, min_ratio: 0.1 }.at(0), 1.0, "a single step runs at the peak");
    }
}
