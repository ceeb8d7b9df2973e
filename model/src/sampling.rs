//! Choosing the next token from one row of logits: greedy, temperature, top-k, top-p.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// How tokens are drawn. Names follow TRL/vLLM (`temperature`, `top_p`, `top_k`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingConfig {
    /// Softmax temperature; 0 means greedy (default 1.0).
    pub temperature: f64,
    /// Nucleus mass kept, in (0, 1] (default 1.0 = off).
    pub top_p: f64,
    /// Keep only the k most likely tokens; 0 = off (default 0).
    pub top_k: usize,
    /// Most tokens generated per sequence (default 64).
    pub max_new_tokens: usize,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self { temperature: 1.0, top_p: 1.0, top_k: 0, max_new_tokens: 64 }
    }
}

impl SamplingConfig {
    /// Greedy decoding for `max_new_tokens`.
    pub fn greedy(max_new_tokens: usize) -> Self {
        Self { temperature: 0.0, max_new_tokens, ..Self::default() }
    }

    /// The temperature the log-probs are taken at: the sampling temperature, or 1 when greedy.
    pub fn logprob_temperature(&self) -> f64 {
        if self.temperature > 0.0 { self.temperature } else { 1.0 }
    }

    /// Checks ranges, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(format!("temperature must be >= 0, got {}", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        Ok(())
    }
}

/// log softmax(logits / t) and softmax(logits / t) of one row, in f64, with one exp per entry.
pub fn softmax(logits: &[f32], t: f64) -> (Vec<f64>, Vec<f64>) {
    let max = logits.iter().fold(f32::NEG_INFINITY, |a, b| a.max(*b)) as f64;
    let scaled: Vec<f64> = logits.iter().map(|x| (*x as f64 - max) / t).collect();
    let mut p: Vec<f64> = scaled.iter().map(|s| s.exp()).collect();
    let sum = p.iter().sum::<f64>();
    let lse = sum.ln();
    p.iter_mut().for_each(|e| *e /= sum);
    (scaled.into_iter().map(|s| s - lse).collect(), p)
}

/// Draws a token from `logits` (one row); returns (token, log-prob, entropy), both of the full
/// distribution at the log-prob temperature (no top-k/top-p truncation): the log-prob is the
/// quantity the trainer recomputes with autodiff, the entropy H = −Σ p log p is TRL's `entropy`.
pub fn sample(logits: &[f32], config: &SamplingConfig, rng: &mut impl Rng) -> (u32, f64, f64) {
    let (logp, p) = softmax(logits, config.logprob_temperature());
    let token = if config.temperature <= 0.0 {
        argmax(&logp)
    } else {
        let mut order: Vec<usize> = (0..logp.len()).collect();
        let truncate = config.top_k > 0 || config.top_p < 1.0;
        if truncate {
            order.sort_unstable_by(|a, b| logp[*b].total_cmp(&logp[*a]).then(a.cmp(b)));
            if config.top_k > 0 {
                order.truncate(config.top_k.max(1));
            }
            if config.top_p < 1.0 {
                let mut mass = 0.0;
                let keep = order.iter().position(|i| {
                    mass += p[*i];
                    mass >= config.top_p
                });
                order.truncate(keep.map_or(order.len(), |k| k + 1));
            }
        }
        let total: f64 = order.iter().map(|i| p[*i]).sum();
        let mut u = rng.random::<f64>() * total;
        let mut chosen = *order.last().expect("vocabulary is not empty");
        for i in &order {
            u -= p[*i];
            if u <= 0.0 {
                chosen = *i;
                break;
            }
        }
        chosen
    };
    let entropy = -p.iter().zip(&logp).map(|(p, l)| p * l).filter(|x| x.is_finite()).sum::<f64>();
    (token as u32, logp[token], entropy)
}

/// Index of the largest value; the first on ties (as torch.argmax).
pub fn argmax(xs: &[f64]) -> usize {
    let mut best = 0;
    for (i, x) in xs.iter().enumerate() {
        if *x > xs[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn greedy_picks_the_first_maximum() {
        let cfg = SamplingConfig::greedy(1);
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let (t, lp, _) = sample(&[1.0, 3.0, 3.0, -1.0], &cfg, &mut rng);
        assert_eq!(t, 1);
        let expected = 3.0 - (1f64.exp() + 2.0 * 3f64.exp() + (-1f64).exp()).ln();
        assert!((lp - expected).abs() < 1e-12);
    }

    #[test]
    fn entropy_is_that_of_the_tempered_distribution() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let (_, _, uniform) = sample(&[0.5; 4], &SamplingConfig::default(), &mut rng);
        assert!((uniform - 4f64.ln()).abs() < 1e-12, "uniform over 4: ln 4, got {uniform}");
        let (_, _, h) = sample(&[0.0, 1.0], &SamplingConfig { temperature: 0.5, ..Default::default() }, &mut rng);
        let p = 1.0 / (1.0 + 2f64.exp()); // softmax([0, 2]) at t = 0.5
        assert!((h + p * p.ln() + (1.0 - p) * (1.0 - p).ln()).abs() < 1e-12, "{h}");
    }

    #[test]
    fn top_k_one_is_greedy_and_top_p_keeps_the_nucleus() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let logits = [0.0f32, 2.0, 1.0, 0.5];
        let k1 = SamplingConfig { top_k: 1, ..Default::default() };
        let p = SamplingConfig { top_p: 0.5, ..Default::default() }; // token 1 alone has p ≈ 0.57
        for _ in 0..50 {
            assert_eq!(sample(&logits, &k1, &mut rng).0, 1);
            assert_eq!(sample(&logits, &p, &mut rng).0, 1);
        }
    }

    #[test]
    fn sampling_follows_the_distribution_and_the_seed() {
        let logits = [0.0f32, (3f32).ln()]; // p = [0.25, 0.75]
        let cfg = SamplingConfig::default();
        let draw = |seed| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            (0..4000).filter(|_| sample(&logits, &cfg, &mut rng).0 == 1).count()
        };
        let ones = draw(1);
        assert!((2850..3150).contains(&ones), "{ones}");
        assert_eq!(draw(1), ones, "same seed, same draws");
    }
}
