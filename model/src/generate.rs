//! Batched generation with a KV cache: ragged prompts are left-padded, every row has its own
//! seeded RNG, and a row stops at an end-of-turn token or `max_new_tokens`.

use crate::model::{CausalLm, KvCache};
use crate::sampling::{SamplingConfig, sample};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;

/// One generated completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// Generated ids, the end-of-turn token included when one was produced.
    pub tokens: Vec<u32>,
    /// Sampling-time log π(token) at the log-prob temperature, one per token.
    pub logprobs: Vec<f64>,
    /// Entropy of the sampling-time distribution at each token (same temperature).
    pub entropies: Vec<f64>,
    /// Whether an end-of-turn token ended it (false: cut at `max_new_tokens`).
    pub finished: bool,
}

/// Left-pads `rows` to one length: (ids `[batch, len]`, real-token flags).
pub fn left_pad(rows: &[Vec<u32>], pad: u32, device: &Device) -> (Tensor<2, Int>, Vec<Vec<bool>>) {
    let len = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let mut ids = Vec::with_capacity(rows.len() * len);
    let mut valid = Vec::with_capacity(rows.len());
    for r in rows {
        let pad_n = len - r.len();
        ids.extend(std::iter::repeat_n(pad as i64, pad_n).chain(r.iter().map(|t| *t as i64)));
        valid.push(std::iter::repeat_n(false, pad_n).chain(std::iter::repeat_n(true, r.len())).collect());
    }
    (Tensor::from_data(TensorData::new(ids, [rows.len(), len]), device), valid)
}

/// Generates one completion per prompt. `seeds[i]` seeds row i; `eos` ends a row;
/// `steer[l]` `[rows, d]` (one row for all, or one per prompt) is added to layer l's attention
/// output at the last position of every step.
pub fn generate(
    model: &CausalLm,
    prompts: &[Vec<u32>],
    config: &SamplingConfig,
    seeds: &[u64],
    eos: &[u32],
    pad: u32,
    steer: Option<&[Tensor<2>]>,
) -> Vec<Generation> {
    let b = prompts.len();
    let mut out: Vec<Generation> = vec![Generation { tokens: Vec::new(), logprobs: Vec::new(), entropies: Vec::new(), finished: false }; b];
    if b == 0 || config.max_new_tokens == 0 {
        return out;
    }
    let device = model.model.embed_tokens.weight.device();
    let mut rngs: Vec<rand::rngs::StdRng> = seeds.iter().map(|s| rand::rngs::StdRng::seed_from_u64(*s)).collect();
    let mut cache = KvCache::new(model.num_layers(), b);
    let (ids, valid) = left_pad(prompts, pad, &device);
    let mut logits = last_logits(model, ids, &valid, &mut cache, steer);
    for step in 0..config.max_new_tokens {
        let vocab = logits.len() / b;
        let mut next = vec![pad as i64; b];
        let mut live = vec![false; b];
        for r in 0..b {
            if out[r].finished {
                continue;
            }
            let (t, lp, h) = sample(&logits[r * vocab..(r + 1) * vocab], config, &mut rngs[r]);
            out[r].tokens.push(t);
            out[r].logprobs.push(lp);
            out[r].entropies.push(h);
            out[r].finished = eos.contains(&t);
            next[r] = t as i64;
            live[r] = !out[r].finished;
        }
        if step + 1 == config.max_new_tokens || !live.iter().any(|l| *l) {
            break;
        }
        let ids = Tensor::from_data(TensorData::new(next, [b, 1]), &device);
        let valid: Vec<Vec<bool>> = live.iter().map(|l| vec![*l]).collect();
        logits = last_logits(model, ids, &valid, &mut cache, steer);
    }
    out
}

/// Runs `ids` through the model (growing the cache) and returns the last position's logits, row-major `[batch · V]`.
fn last_logits(model: &CausalLm, ids: Tensor<2, Int>, valid: &[Vec<bool>], cache: &mut KvCache, steer: Option<&[Tensor<2>]>) -> Vec<f32> {
    let [b, t] = ids.dims();
    let h = model.hidden(ids, valid, Some(cache), steer);
    let d = h.dims()[2];
    let last = h.slice([0..b, t - 1..t, 0..d]).reshape([b, d]);
    model.logits(last).into_data().try_to_vec::<f32>().expect("logits are f32")
}
