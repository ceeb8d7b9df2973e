//! Batched generation with a KV cache: ragged prompts are left-padded, every row has its own
//! seeded RNG, and a row stops at an end-of-turn token or `max_new_tokens`.

use crate::layers::LayerCache;
use crate::model::{CausalLm, KvCache};
use crate::sampling::{SamplingConfig, sample};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rayon::prelude::*;

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
/// output at the last position of every step. An unsteered batch is prefilled by
/// [`prefill_shared`] (each shared token runs once); a steered batch or a single prompt by
/// [`prefill_padded`], so α = 0 on one prompt is bit-identical to no steering.
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
    let (mut cache, mut logits) = match steer {
        None if b > 1 && prompts.iter().all(|p| !p.is_empty()) => prefill_shared(model, prompts),
        _ => prefill_padded(model, prompts, pad, steer),
    };
    for step in 0..config.max_new_tokens {
        let vocab = logits.len() / b;
        let mut next = vec![pad as i64; b];
        let mut live = vec![false; b];
        // rows draw in parallel, each from its own generator
        let draws: Vec<Option<(u32, f64, f64)>> =
            (logits.par_chunks(vocab).zip(&mut rngs).zip(&out)).map(|((row, rng), o)| (!o.finished).then(|| sample(row, config, rng))).collect();
        for (r, draw) in draws.into_iter().enumerate() {
            let Some((t, lp, h)) = draw else { continue };
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

/// Runs the left-padded `prompts` as one batch: the cache (one row per prompt) and each row's
/// last-position logits, row-major `[rows · V]`.
pub fn prefill_padded(model: &CausalLm, prompts: &[Vec<u32>], pad: u32, steer: Option<&[Tensor<2>]>) -> (KvCache, Vec<f32>) {
    let device = model.model.embed_tokens.weight.device();
    let mut cache = KvCache::new(model.num_layers(), prompts.len());
    let (ids, valid) = left_pad(prompts, pad, &device);
    let logits = last_logits(model, ids, &valid, &mut cache, steer);
    (cache, logits)
}

/// Samples `seeds[i].len()` completions of `prompts[i]`, all in one batched generation (sample
/// j of prompt i drawn with seed `seeds[i][j]`); `steer` as in [`generate`].
pub fn sample_each(
    policy: &CausalLm,
    prompts: &[Vec<u32>],
    seeds: &[Vec<u64>],
    sampling: &SamplingConfig,
    eos: &[u32],
    pad: u32,
    steer: Option<&[Tensor<2>]>,
) -> Vec<Vec<Generation>> {
    let rows: Vec<Vec<u32>> = prompts.iter().zip(seeds).flat_map(|(p, s)| std::iter::repeat_n(p.clone(), s.len())).collect();
    let flat: Vec<u64> = seeds.iter().flatten().copied().collect();
    let mut gens = generate(policy, &rows, sampling, &flat, eos, pad, steer).into_iter();
    seeds.iter().map(|s| gens.by_ref().take(s.len()).collect()).collect()
}

/// [`prefill_padded`]'s cache and logits (equal up to float rounding), computed so that a
/// token the prompts share runs once: their longest common prefix runs as one row, then what
/// each prompt adds after it runs as a tree (one tree pass per distinct first token after the
/// prefix), and each prompt's own path through it is gathered into its left-padded cache row.
/// Prompts of one dialogue, or G copies of one prompt, cost little more than the longest one.
/// Every prompt must be non-empty.
pub fn prefill_shared(model: &CausalLm, prompts: &[Vec<u32>]) -> (KvCache, Vec<f32>) {
    let device = model.model.embed_tokens.weight.device();
    let (b, len) = (prompts.len(), prompts.iter().map(Vec::len).max().unwrap_or(0));
    let shortest = prompts.iter().map(Vec::len).min().unwrap_or(0);
    assert!(shortest > 0, "prefill_shared needs non-empty prompts");
    // 1. the common prefix (short of every prompt's last token, which each row's logits need)
    let common = (0..shortest - 1).take_while(|&i| prompts.iter().all(|p| p[i] == prompts[0][i])).count();
    let mut base = KvCache::new(model.num_layers(), 1);
    if common > 0 {
        let ids = Tensor::<2, Int>::from_data(TensorData::new(prompts[0][..common].iter().map(|t| *t as i64).collect(), [1, common]), &device);
        model.hidden(ids, &[vec![true; common]], Some(&mut base), None);
    }
    // 2. one tree per first token after the prefix; rows gathered group by group
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for r in 0..b {
        match groups.iter_mut().find(|g| prompts[g[0]][common] == prompts[r][common]) {
            Some(g) => g.push(r),
            None => groups.push(vec![r]),
        }
    }
    let (mut layers, mut last_hidden) = (vec![Vec::new(); model.num_layers()], Vec::new());
    for rows in &groups {
        let tree = crate::trie::Trie::of(rows.iter().map(|&r| &prompts[r][common..]));
        let mut cache = base.clone();
        let hidden = model.extend_tree(&tree.tokens, &tree.parent, &vec![common; tree.tokens.len()], &mut cache);
        let [_, n, d] = hidden.dims();
        let ends: Vec<i64> = tree.paths.iter().map(|p| *p.last().expect("non-empty suffix") as i64).collect();
        last_hidden.push(hidden.reshape([n, d]).select(0, Tensor::<1, Int>::from_data(TensorData::new(ends, [rows.len()]), &device)));
        // key index of each row's position: left padding (any key, masked), prefix, its path
        let index: Vec<i64> = tree
            .paths
            .iter()
            .flat_map(|p| std::iter::repeat_n(0, len - common - p.len()).chain(0..common as i64).chain(p.iter().map(|i| (common + i) as i64)))
            .collect();
        let index = Tensor::<1, Int>::from_data(TensorData::new(index, [rows.len() * len]), &device);
        for (l, layer) in cache.layers.into_iter().enumerate() {
            let (k, v) = layer.kv.expect("the tree pass filled every layer");
            let per_row = |x: Tensor<4>| {
                let [_, heads, _, hd] = x.dims();
                x.select(2, index.clone()).reshape([heads, rows.len(), len, hd]).swap_dims(0, 1)
            };
            layers[l].push((per_row(k), per_row(v)));
        }
    }
    // 3. back to prompt order
    let order: Vec<usize> = groups.iter().flatten().copied().collect();
    let mut inverse = vec![0i64; b];
    order.iter().enumerate().for_each(|(at, &r)| inverse[r] = at as i64);
    let inverse = Tensor::<1, Int>::from_data(TensorData::new(inverse, [b]), &device);
    let reorder = |parts: Vec<Tensor<4>>| Tensor::cat(parts, 0).select(0, inverse.clone());
    let mut cache = KvCache::new(0, b);
    cache.layers = layers
        .into_iter()
        .map(|parts| {
            let (k, v): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
            LayerCache { kv: Some((reorder(k), reorder(v))) }
        })
        .collect();
    cache.valid = prompts.iter().map(|p| std::iter::repeat_n(false, len - p.len()).chain(std::iter::repeat_n(true, p.len())).collect()).collect();
    cache.next_position = prompts.iter().map(Vec::len).collect();
    cache.capacity = len;
    let hidden = Tensor::cat(last_hidden, 0).select(0, inverse);
    let logits = model.logits(hidden).into_data().try_to_vec::<f32>().expect("logits are f32");
    (cache, logits)
}

/// Runs `ids` through the model (growing the cache) and returns the last position's logits, row-major `[batch · V]`.
fn last_logits(model: &CausalLm, ids: Tensor<2, Int>, valid: &[Vec<bool>], cache: &mut KvCache, steer: Option<&[Tensor<2>]>) -> Vec<f32> {
    let [b, t] = ids.dims();
    let h = model.hidden(ids, valid, Some(cache), steer);
    let d = h.dims()[2];
    let last = h.slice([0..b, t - 1..t, 0..d]).reshape([b, d]);
    model.logits(last).into_data().try_to_vec::<f32>().expect("logits are f32")
}
