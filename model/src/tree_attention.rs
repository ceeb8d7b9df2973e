//! Attention of a prefix tree in blocks: the tree's tokens (in tree order) are cut into blocks
//! of [`BLOCK`] consecutive queries, and each block attends only to the key slots some query
//! of it may see (its ancestors and the cached prefix they continue), gathered into one
//! batched call. A tree of n tokens whose paths are short next to n (a dialogue's targets
//! branching off its lines, a group's completions off its prompt) then costs Σ_blocks
//! B·|keys| score entries instead of n², in time and, under autodiff, in the score tensors
//! kept for the backward pass. The result is the dense masked attention's, to float rounding:
//! a query's visible keys are the same, the others were −∞ there and are absent here.
//!
//! Written by hand: burn has no block-sparse attention, and this is a gather and one call of
//! burn's `attention` (whose autodiff is burn's), not a kernel.

use crate::attention::attend;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

/// Queries per block.
pub const BLOCK: usize = 64;

/// The gathered layout of one tree-masked call, shared by every layer.
#[derive(Debug, Clone)]
pub struct TreeBlocks {
    /// Queries (tree tokens) of the call, n.
    pub queries: usize,
    /// Blocks, ⌈n / B⌉.
    pub blocks: usize,
    /// Key slots each block gathers, K (the most any block needs; the rest are masked pads).
    pub width: usize,
    /// Per block, its K key slots, `[blocks · K]`.
    pub keys: Tensor<1, Int>,
    /// `true` = masked, `[blocks, 1, g·B, K]`, each block's B rows once per query head of a kv
    /// head's group of g (padded queries see their block's first slot).
    pub mask: Tensor<4, Bool>,
}

impl TreeBlocks {
    /// The blocked layout of `mask` (`true` = masked, `queries × keys`, row-major) for query
    /// heads in groups of `group` per kv head, or `None` when it would not cut the score
    /// entries below three quarters of the dense n × keys.
    pub fn plan(mask: &[bool], queries: usize, keys: usize, group: usize, device: &Device) -> Option<Self> {
        let blocks = queries.div_ceil(BLOCK);
        let visible: Vec<Vec<usize>> = (0..blocks)
            .map(|b| {
                let rows = b * BLOCK..((b + 1) * BLOCK).min(queries);
                (0..keys).filter(|&j| rows.clone().any(|i| !mask[i * keys + j])).collect()
            })
            .collect();
        let width = visible.iter().map(Vec::len).max().unwrap_or(0).max(1);
        if 4 * blocks * BLOCK * width >= 3 * queries * keys {
            return None;
        }
        let mut slots = Vec::with_capacity(blocks * width);
        let mut masked = Vec::with_capacity(blocks * group * BLOCK * width);
        for (b, cols) in visible.iter().enumerate() {
            slots.extend(cols.iter().map(|&j| j as i64));
            slots.extend(std::iter::repeat_n(cols.first().copied().unwrap_or(0) as i64, width - cols.len()));
            let mut rows = vec![true; BLOCK * width];
            for (r, out) in rows.chunks_mut(width).enumerate() {
                match b * BLOCK + r {
                    i if i < queries => cols.iter().enumerate().for_each(|(c, &j)| out[c] = mask[i * keys + j]),
                    _ => out[0] = false,
                }
            }
            (0..group).for_each(|_| masked.extend_from_slice(&rows));
        }
        Some(Self {
            queries,
            blocks,
            width,
            keys: Tensor::from_data(TensorData::new(slots, [blocks * width]), device),
            mask: Tensor::from_data(TensorData::new(masked, [blocks, 1, group * BLOCK, width]), device),
        })
    }

    /// softmax(q kᵀ/√hd, masked) v for q `[1, H, n, hd]` against the key slots k, v
    /// `[1, KV, slots, hd]` (KV divides H; each kv head serves H/KV query heads, as in GQA),
    /// `[1, H, n, hd]`.
    pub fn attend(&self, q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
        let [batch, h, n, hd] = q.dims();
        debug_assert_eq!((batch, n), (1, self.queries), "a tree is one row of the planned tokens");
        let kv = k.dims()[1];
        let (g, nb, kw) = (h / kv, self.blocks, self.width);
        let padded = nb * BLOCK;
        let device = q.device();
        let q = if padded > n { Tensor::cat(vec![q, Tensor::zeros([1, h, padded - n, hd], &device)], 2) } else { q };
        // [1, H, nb·B, hd] → [nb, KV, g·B, hd]: a kv head's query heads attend as one sequence
        let q = q.reshape([1, h, nb, BLOCK, hd]).swap_dims(1, 2).reshape([nb, kv, g * BLOCK, hd]);
        let gather = |x: Tensor<4>| x.select(2, self.keys.clone()).reshape([1, kv, nb, kw, hd]).swap_dims(1, 2).reshape([nb, kv, kw, hd]);
        let mask = self.mask.clone().expand([nb, kv, g * BLOCK, kw]);
        let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: false };
        let out = attend(q, gather(k), gather(v), Some(mask), options);
        let out = out.reshape([1, nb, h, BLOCK, hd]).swap_dims(1, 2).reshape([1, h, padded, hd]);
        if padded > n { out.slice([0..1, 0..h, 0..n, 0..hd]) } else { out }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trie::Trie;
    use burn::tensor::Distribution;
    use burn::tensor::module::attention;

    /// The mask of a trie as `extend_tree` builds it without a cache: a token sees its ancestors
    /// and itself.
    fn trie_mask(trie: &Trie) -> Vec<bool> {
        let n = trie.tokens.len();
        let mut mask = vec![true; n * n];
        for i in 0..n {
            let mut at = Some(i);
            while let Some(j) = at {
                mask[i * n + j] = false;
                at = trie.parent[j];
            }
        }
        mask
    }

    /// A dialogue-shaped trie: a header, lines, and after each line a target's own suffix.
    fn dialogue_trie() -> Trie {
        let header: Vec<u32> = (0..20).collect();
        let mut rows = Vec::new();
        let mut prefix = header.clone();
        for line in 0..12u32 {
            prefix.extend((0..11).map(|k| 100 + line * 11 + k));
            let suffix = (0..40 + line % 4).map(|k| 1000 + line * 50 + k);
            rows.push(prefix.iter().copied().chain(suffix).collect::<Vec<u32>>());
        }
        Trie::of(rows.iter().map(Vec::as_slice))
    }

    fn dense(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, mask: &[bool]) -> Tensor<4> {
        let [_, h, n, _] = q.dims();
        let kv = k.dims()[1];
        let repeat = |x: Tensor<4>| {
            let [_, _, s, hd] = x.dims();
            x.unsqueeze_dim::<5>(2).expand([1, kv, h / kv, s, hd]).reshape([1, h, s, hd])
        };
        let mask = Tensor::<4, Bool>::from_data(TensorData::new(mask.to_vec(), [1, 1, n, n]), &q.device()).expand([1, h, n, n]);
        let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: false };
        attention(q, repeat(k), repeat(v), Some(mask), None, options)
    }

    fn values(t: Tensor<4>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().expect("f32 values")
    }

    fn gap(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn blocked_attention_equals_the_dense_masked_one_in_values_and_gradients() {
        let trie = dialogue_trie();
        let n = trie.tokens.len();
        let mask = trie_mask(&trie);
        let device = Device::flex().autodiff();
        let (h, kv, hd) = (4, 2, 8);
        let blocks = TreeBlocks::plan(&mask, n, n, h / kv, &device).expect("a dialogue tree is sparse enough to block");
        assert!(blocks.blocks * BLOCK * blocks.width < n * n / 2, "{} blocks of width {} for {n} tokens", blocks.blocks, blocks.width);
        let input = |shape: [usize; 4]| Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device).require_grad();
        let (q, k, v) = (input([1, h, n, hd]), input([1, kv, n, hd]), input([1, kv, n, hd]));
        let weights = Tensor::<4>::random([1, h, n, hd], Distribution::Normal(0.0, 1.0), &device);
        let run = |blocked: bool| {
            let out = if blocked { blocks.attend(q.clone(), k.clone(), v.clone()) } else { dense(q.clone(), k.clone(), v.clone(), &mask) };
            let grads = (out.clone() * weights.clone()).sum().backward();
            let grad = |x: &Tensor<4>| values(x.grad(&grads).expect("a gradient"));
            (values(out), [grad(&q), grad(&k), grad(&v)])
        };
        let ((out_dense, grads_dense), (out_blocked, grads_blocked)) = (run(false), run(true));
        assert!(gap(&out_dense, &out_blocked) < 1e-5, "outputs differ by {}", gap(&out_dense, &out_blocked));
        for (name, (a, b)) in ["q", "k", "v"].iter().zip(grads_dense.iter().zip(&grads_blocked)) {
            assert!(gap(a, b) < 1e-4, "d{name} differs by {}", gap(a, b));
            assert!(a.iter().any(|x| x.abs() > 1e-3), "d{name} is not trivially zero");
        }
    }

    #[test]
    fn a_dense_tree_is_not_blocked() {
        // One chain of 200 tokens: every block sees nearly every earlier key.
        let chain: Vec<u32> = (0..200).collect();
        let trie = Trie::of(std::iter::once(chain.as_slice()));
        let n = trie.tokens.len();
        let plan = TreeBlocks::plan(&trie_mask(&trie), n, n, 1, &Device::flex());
        assert!(plan.is_none(), "a causal chain keeps the dense call");
    }
}
