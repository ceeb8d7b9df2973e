//! Log-probs of given completions under the model, for training: the vocabulary projection is
//! computed only at the positions that predict a completion token. Two layouts with the same
//! result: left-padded rows (every prompt token run once per completion), or one prefix tree of
//! all the sequences (a token that sequences share, a group's prompt say, runs once; its
//! gradient is the sum over the sequences, exactly as through the copies).

use crate::generate::left_pad;
use crate::model::{CausalLm, KvCache};
use crate::trie::Trie;
use burn::tensor::{Int, Tensor, TensorData};

/// Per-token log π(o_t | q, o_<t) at temperature `t`, all completions flattened row by row:
/// `[Σ_i |o_i|]`. Differentiable when the model is on an autodiff device.
///
/// log π = z_y/t − logsumexp(z/t), the max taken detached (exact, and cheaper under autodiff).
pub fn completion_logprobs(model: &CausalLm, prompts: &[Vec<u32>], completions: &[Vec<u32>], pad: u32, t: f64) -> Tensor<1> {
    let device = model.model.embed_tokens.weight.device();
    let rows: Vec<Vec<u32>> = prompts.iter().zip(completions).map(|(p, c)| p.iter().chain(c).copied().collect()).collect();
    let (ids, valid) = left_pad(&rows, pad, &device);
    let [b, len] = ids.dims();
    let hidden = model.hidden(ids, &valid, None, None);
    let d = hidden.dims()[2];
    // 1. rows of the hidden states that predict completion tokens
    let mut at = Vec::new();
    let mut targets = Vec::new();
    for (r, (p, c)) in prompts.iter().zip(completions).enumerate() {
        let start = len - p.len() - c.len(); // left padding of row r
        for (j, tok) in c.iter().enumerate() {
            at.push((r * len + start + p.len() + j - 1) as i64);
            targets.push(*tok as i64);
        }
    }
    let n = at.len();
    if n == 0 {
        return Tensor::zeros([0], &device);
    }
    let picked = hidden.reshape([b * len, d]).select(0, Tensor::<1, Int>::from_data(TensorData::new(at, [n]), &device));
    tempered_logprobs(model, picked, targets, t)
}

/// [`completion_logprobs`] of the same completions (the same values, up to float rounding, in
/// the same order), computed on one prefix tree of the sequences q_i · o_i: what they share runs
/// once, each token at the position its own sequence gives it and seeing only its own past.
pub fn completion_logprobs_tree(model: &CausalLm, prompts: &[Vec<u32>], completions: &[Vec<u32>], t: f64) -> Tensor<1> {
    let device = model.model.embed_tokens.weight.device();
    let rows: Vec<Vec<u32>> = prompts.iter().zip(completions).map(|(p, c)| p.iter().chain(c).copied().collect()).collect();
    let trie = Trie::of(rows.iter().map(Vec::as_slice));
    // 1. the node that predicts each completion token: the one holding the token before it
    let mut at = Vec::new();
    let mut targets = Vec::new();
    for ((p, c), path) in prompts.iter().zip(completions).zip(&trie.paths) {
        for (j, tok) in c.iter().enumerate() {
            at.push(path[p.len() + j - 1] as i64);
            targets.push(*tok as i64);
        }
    }
    let n = at.len();
    if n == 0 {
        return Tensor::zeros([0], &device);
    }
    let hidden = model.extend_tree(&trie.tokens, &trie.parent, &vec![0; trie.tokens.len()], &mut KvCache::new(0, 1));
    let [_, nodes, d] = hidden.dims();
    let picked = hidden.reshape([nodes, d]).select(0, Tensor::<1, Int>::from_data(TensorData::new(at, [n]), &device));
    tempered_logprobs(model, picked, targets, t)
}

/// log softmax(z/t) at `targets`, z the logits of the `picked` hidden rows `[n, d]`.
fn tempered_logprobs(model: &CausalLm, picked: Tensor<2>, targets: Vec<i64>, t: f64) -> Tensor<1> {
    let n = targets.len();
    let device = picked.device();
    // 2. logits there only, tempered
    let z = model.logits(picked).div_scalar(t);
    // 3. log-softmax at the targets
    let max = z.clone().detach().max_dim(1);
    let lse = (z.clone() - max.clone()).exp().sum_dim(1).log() + max;
    let chosen = z.gather(1, Tensor::<2, Int>::from_data(TensorData::new(targets, [n, 1]), &device));
    (chosen - lse).reshape([n])
}
