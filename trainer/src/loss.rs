//! The SELF-GRPO objective, per token, and how token losses are aggregated.
//!
//! For token t of sample i with advantage A_i, ratio ρ = π_θ / π_old and the k3 estimator
//! KL_t = π_ref/π_θ − log(π_ref/π_θ) − 1 (Schulman, 2020), the token loss is
//! ℓ_t = −w_t min(ρ A_i, clip(ρ, 1 − ε_lo, 1 + ε_hi) A_i) + β KL_t, where w_t = 1 for a token
//! π_old drew and w_t = min(π_old/π_behaviour, C) for one a steered policy drew (truncated
//! importance sampling, as verl's TIS; Ionides 2008)
//! (PPO clipping, Schulman et al. 2017; separate upper ε is DAPO's clip-higher, Yu et al. 2025).
//! Aggregation turns ℓ into one number; each [`LossType`] is a set of per-token weights.

use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// How token losses become the batch loss, with TRL's `loss_type` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossType {
    /// Mean over each sequence's tokens, then over sequences (DeepSeekMath GRPO).
    Grpo,
    /// Mean over all tokens of the batch (BNPO).
    Bnpo,
    /// Sum over tokens divided by batch size × max_completion_length (Dr.GRPO, Liu et al. 2025).
    DrGrpo,
    /// Token mean over the whole batch (DAPO); TRL's default.
    #[default]
    Dapo,
}

impl LossType {
    /// Per-token weights w_t so that the loss is Σ w_t ℓ_t. `lengths[i]` = |o_i|;
    /// `included[i]` false drops sample i (masked truncated completion) from every count.
    pub fn token_weights(self, lengths: &[usize], included: &[bool], max_completion_length: usize) -> Vec<f64> {
        let kept: Vec<usize> = lengths.iter().zip(included).map(|(l, k)| if *k { *l } else { 0 }).collect();
        let tokens: usize = kept.iter().sum();
        let sequences = included.iter().filter(|k| **k).count().max(1);
        let mut w = Vec::with_capacity(lengths.iter().sum());
        for (len, k) in lengths.iter().zip(&kept) {
            let value = if *k == 0 {
                0.0
            } else {
                match self {
                    LossType::Grpo => 1.0 / (*k as f64 * sequences as f64),
                    LossType::Bnpo | LossType::Dapo => 1.0 / tokens as f64,
                    LossType::DrGrpo => 1.0 / (lengths.len() as f64 * max_completion_length.max(1) as f64),
                }
            };
            w.extend(std::iter::repeat_n(value, *len));
        }
        w
    }
}

/// Clip range and KL weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clip {
    /// ε_lo: ρ is clipped below at 1 − ε_lo.
    pub epsilon: f64,
    /// ε_hi: ρ is clipped above at 1 + ε_hi.
    pub epsilon_high: f64,
    /// β, the weight of KL to the reference.
    pub beta: f64,
}

/// Everything the loss needs per token, flattened sample by sample.
pub struct TokenBatch {
    /// log π_old, `[N]` (no gradient).
    pub old_logprobs: Vec<f32>,
    /// log π_ref, `[N]`, when β > 0.
    pub ref_logprobs: Option<Vec<f32>>,
    /// A_i repeated over sample i's tokens, `[N]`.
    pub advantages: Vec<f32>,
    /// w_t, the truncated importance weight of each token (1 when π_old drew it), `[N]`.
    pub importance: Vec<f32>,
    /// Aggregation weights, `[N]` ([`LossType::token_weights`]).
    pub weights: Vec<f32>,
}

/// Diagnostics of one loss evaluation, named as TRL logs them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossStats {
    /// Σ w_t ℓ_t summed on the host in f64, in token order: the same bits on every run
    /// (the backend's parallel sum may differ in the last bit).
    pub loss: f64,
    /// Mean k3 KL over included tokens (0 when β = 0).
    pub kl: f64,
    /// Share of tokens with ρ < 1 − ε_lo and A < 0 (`clip_ratio/low_mean`).
    pub clip_low: f64,
    /// Share of tokens with ρ > 1 + ε_hi and A > 0 (`clip_ratio/high_mean`).
    pub clip_high: f64,
}

impl TokenBatch {
    /// The tokens in `range` (a micro-batch of whole samples).
    pub fn slice(&self, range: std::ops::Range<usize>) -> TokenBatch {
        TokenBatch {
            old_logprobs: self.old_logprobs[range.clone()].to_vec(),
            ref_logprobs: self.ref_logprobs.as_ref().map(|r| r[range.clone()].to_vec()),
            advantages: self.advantages[range.clone()].to_vec(),
            importance: self.importance[range.clone()].to_vec(),
            weights: self.weights[range].to_vec(),
        }
    }
}

impl LossStats {
    /// The stats of a batch from those of its parts, each with its count of included tokens:
    /// losses add, token means are re-weighted.
    pub fn combine(parts: &[(LossStats, usize)]) -> LossStats {
        let n = parts.iter().map(|(_, k)| *k).sum::<usize>().max(1) as f64;
        let mean = |f: fn(&LossStats) -> f64| parts.iter().map(|(s, k)| f(s) * *k as f64).sum::<f64>() / n;
        LossStats { loss: parts.iter().map(|(s, _)| s.loss).sum(), kl: mean(|s| s.kl), clip_low: mean(|s| s.clip_low), clip_high: mean(|s| s.clip_high) }
    }
}

/// The batch loss Σ w_t ℓ_t (a scalar tensor, differentiable through `logprobs`) and its stats.
pub fn grpo_loss(logprobs: Tensor<1>, batch: &TokenBatch, clip: Clip) -> (Tensor<1>, LossStats) {
    let device = logprobs.device();
    let n = batch.old_logprobs.len();
    let vec = |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [n]), &device);
    let (old, adv, w) = (vec(&batch.old_logprobs), vec(&batch.advantages), vec(&batch.weights));
    // 1. importance ratio and its clipped surrogate, weighed by the behaviour correction
    let ratio = (logprobs.clone() - old).exp();
    let clipped = ratio.clone().clamp(1.0 - clip.epsilon, 1.0 + clip.epsilon_high);
    let surrogate = (ratio.clone() * adv.clone()).min_pair(clipped * adv.clone());
    let mut per_token = (surrogate * vec(&batch.importance)).neg();
    // 2. k3 KL to the reference
    let mut kl_values = vec![0.0f32; n];
    if let (Some(reference), true) = (&batch.ref_logprobs, clip.beta > 0.0) {
        let delta = vec(reference) - logprobs.clone();
        let kl = delta.clone().exp() - delta - 1.0;
        kl_values = host(kl.clone());
        per_token = per_token + kl * clip.beta;
    }
    // 3. aggregate
    let token_losses = host(per_token.clone());
    let loss = (per_token * w).sum();
    let ratios = host(ratio);
    let mut stats = stats(&ratios, &kl_values, batch, clip);
    stats.loss = token_losses.iter().zip(&batch.weights).map(|(l, w)| *l as f64 * *w as f64).sum();
    (loss, stats)
}

/// A tensor's values on the host as f32, whatever its dtype (a bf16 model's too).
fn host(t: Tensor<1>) -> Vec<f32> {
    t.detach().try_to_vec_as::<f32>().expect("the backend reads back its own tensor")
}

fn stats(ratio: &[f32], kl: &[f32], batch: &TokenBatch, clip: Clip) -> LossStats {
    let included: Vec<usize> = (0..ratio.len()).filter(|i| batch.weights[*i] > 0.0).collect();
    let n = included.len().max(1) as f64;
    let share = |f: &dyn Fn(usize) -> bool| included.iter().filter(|i| f(**i)).count() as f64 / n;
    LossStats {
        loss: 0.0,
        kl: included.iter().map(|i| kl[*i] as f64).sum::<f64>() / n,
        clip_low: share(&|i| (ratio[i] as f64) < 1.0 - clip.epsilon && batch.advantages[i] < 0.0),
        clip_high: share(&|i| (ratio[i] as f64) > 1.0 + clip.epsilon_high && batch.advantages[i] > 0.0),
    }
}

/// The SFT loss for warm starts: masked next-token cross-entropy, the mean of −log π(o_t)
/// over the batch's `tokens` completion tokens (prompt tokens carry no loss): −Σ log π(o_t) / n.
/// `logprobs` as returned by [`selfemo_model::completion_logprobs`] at temperature 1, for the
/// whole batch or for one rank's share of it (`tokens` counts the whole batch's).
pub fn sft_loss(logprobs: Tensor<1>, tokens: usize) -> Tensor<1> {
    logprobs.sum().neg().div_scalar(tokens.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn aggregation_weights() {
        let lens = [2, 4];
        let all = [true, true];
        assert_eq!(LossType::Grpo.token_weights(&lens, &all, 8), [0.25, 0.25, 0.125, 0.125, 0.125, 0.125]);
        assert_eq!(LossType::Dapo.token_weights(&lens, &all, 8), [1.0 / 6.0; 6]);
        assert_eq!(LossType::DrGrpo.token_weights(&lens, &all, 8), [1.0 / 16.0; 6]);
        let w = LossType::Bnpo.token_weights(&lens, &[false, true], 8);
        assert_eq!(w, [0.0, 0.0, 0.25, 0.25, 0.25, 0.25], "a masked truncated sample leaves every count");
    }

    /// Direct scalar implementation of the token loss, the reference for the tensor version.
    fn scalar_loss(lp: &[f64], b: &TokenBatch, c: Clip) -> f64 {
        (0..lp.len())
            .map(|i| {
                let rho = (lp[i] - b.old_logprobs[i] as f64).exp();
                let a = b.advantages[i] as f64;
                let surrogate = b.importance[i] as f64 * (rho * a).min(rho.clamp(1.0 - c.epsilon, 1.0 + c.epsilon_high) * a);
                let kl = b.ref_logprobs.as_ref().map_or(0.0, |r| {
                    let d = r[i] as f64 - lp[i];
                    d.exp() - d - 1.0
                });
                b.weights[i] as f64 * (-surrogate + c.beta * kl)
            })
            .sum()
    }

    fn batch() -> (Vec<f64>, TokenBatch) {
        let lp = vec![-1.0, -0.5, -2.0, -0.1, -3.0];
        let b = TokenBatch {
            old_logprobs: vec![-1.3, -0.5, -1.5, -0.4, -2.9],
            ref_logprobs: Some(vec![-1.1, -0.7, -1.9, -0.2, -3.2]),
            advantages: vec![1.0, 1.0, -0.5, -0.5, 2.0],
            importance: vec![1.0, 0.5, 1.0, 1.0, 0.25],
            weights: LossType::Grpo.token_weights(&[2, 2, 1], &[true; 3], 4).into_iter().map(|w| w as f32).collect(),
        };
        (lp, b)
    }

    #[test]
    fn loss_and_gradients_equal_the_scalar_reference() {
        let (lp, b) = batch();
        let clip = Clip { epsilon: 0.2, epsilon_high: 0.28, beta: 0.04 };
        let device = Device::flex().autodiff();
        let x = Tensor::<1>::from_data(TensorData::new(lp.iter().map(|v| *v as f32).collect::<Vec<_>>(), [5]), &device).require_grad();
        let (loss, stats) = grpo_loss(x.clone(), &b, clip);
        let value = loss.clone().into_scalar::<f32>() as f64;
        assert!((value - scalar_loss(&lp, &b, clip)).abs() < 1e-5, "{value}");
        let grads = loss.backward();
        let g: Vec<f32> = x.grad(&grads).unwrap().into_data().try_to_vec().unwrap();
        for i in 0..lp.len() {
            let h = 1e-4;
            let (mut up, mut down) = (lp.clone(), lp.clone());
            up[i] += h;
            down[i] -= h;
            let fd = (scalar_loss(&up, &b, clip) - scalar_loss(&down, &b, clip)) / (2.0 * h);
            assert!((g[i] as f64 - fd).abs() < 1e-4, "token {i}: {} vs {fd}", g[i]);
        }
        // ρ: [1.35, 1, 0.61, 1.35, 0.90]: token 0 clipped high (A > 0), token 2 clipped low (A < 0).
        assert_eq!(stats.clip_high, 1.0 / 5.0);
        assert_eq!(stats.clip_low, 1.0 / 5.0);
    }

    #[test]
    fn at_the_first_step_kl_is_zero_and_the_loss_is_minus_the_mean_advantage() {
        let (_, mut b) = batch();
        b.importance = vec![1.0; 5];
        b.old_logprobs = vec![-1.0, -0.5, -2.0, -0.1, -3.0];
        b.ref_logprobs = Some(b.old_logprobs.clone());
        let x = Tensor::<1>::from_data(TensorData::new(b.old_logprobs.clone(), [5]), &Device::flex());
        let (loss, stats) = grpo_loss(x, &b, Clip { epsilon: 0.2, epsilon_high: 0.2, beta: 0.04 });
        // Grpo weights: mean per sequence then over sequences: −(1 + (−0.5) + 2) / 3.
        assert!((loss.into_scalar::<f32>() as f64 + 2.5 / 3.0).abs() < 1e-6);
        assert_eq!((stats.kl, stats.clip_low, stats.clip_high), (0.0, 0.0, 0.0));
        assert!((stats.loss + 2.5 / 3.0).abs() < 1e-6);
    }
}
