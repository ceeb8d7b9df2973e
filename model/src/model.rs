//! The causal language model: embedding, decoder layers, final norm, (tied) LM head.

use crate::layers::{AttentionContext, DecoderLayer, LayerCache, Masking, Proj, RmsNorm};
use crate::rope;
use crate::tree_attention::TreeBlocks;
use burn::module::{Module, Param};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

/// The decoder trunk, `model.*` in HF checkpoints.
#[derive(Module, Debug)]
pub struct Decoder {
    /// Token embedding `[V, d]`.
    pub embed_tokens: Embedding,
    /// Decoder layers, `model.layers.{i}`.
    pub layers: Vec<DecoderLayer>,
    /// Final RMSNorm.
    pub norm: RmsNorm,
}

/// A lookup table, `weight` `[V, d]`.
#[derive(Module, Debug)]
pub struct Embedding {
    /// `[V, d]`.
    pub weight: Param<Tensor<2>>,
}

/// A Llama/Qwen3-family causal LM. Field paths equal HF keys (`model.layers.0.mlp.up_proj.weight`).
#[derive(Module, Debug)]
pub struct CausalLm {
    /// The trunk.
    pub model: Decoder,
    /// Untied output head `[V, d]`; `None` when tied to the embedding.
    pub lm_head: Option<Proj>,
    /// RoPE θ.
    pub rope_theta: f64,
}

/// Key/value cache of every layer plus which key positions hold real tokens.
#[derive(Debug, Clone)]
pub struct KvCache {
    /// One per layer.
    pub layers: Vec<LayerCache>,
    /// Key slots every layer holds (≥ [`KvCache::len`]); see [`KvCache::reserve`].
    pub capacity: usize,
    /// Per row, per cached key position: a real token (not left padding).
    pub valid: Vec<Vec<bool>>,
    /// Per row, the position id the next token gets.
    pub next_position: Vec<usize>,
}

/// Key slots a decoding cache grows by at a time.
pub const DECODE_SLACK: usize = 32;

impl KvCache {
    /// An empty cache for `batch` rows.
    pub fn new(num_layers: usize, batch: usize) -> Self {
        Self { layers: vec![LayerCache::default(); num_layers], capacity: 0, valid: vec![Vec::new(); batch], next_position: vec![0; batch] }
    }

    /// The capacity for `t` more keys: unchanged when they fit, else exactly enough for a
    /// prompt (t > 1), or [`DECODE_SLACK`] more for a decoded token, so that decoding grows
    /// the cache (a copy) once every `DECODE_SLACK` tokens instead of at every step.
    pub fn reserve(&mut self, t: usize) -> usize {
        let need = self.len() + t;
        if need > self.capacity {
            self.capacity = need + if t == 1 { DECODE_SLACK } else { 0 };
        }
        self.capacity
    }

    /// Cached length (same for every row).
    pub fn len(&self) -> usize {
        self.valid.first().map_or(0, Vec::len)
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl CausalLm {
    /// Number of decoder layers.
    pub fn num_layers(&self) -> usize {
        self.model.layers.len()
    }

    /// Hidden states after the final norm, `[batch, seq, d]`, for left-padded `tokens`
    /// `[batch, seq]` whose real tokens are marked by `valid` (per row, per position).
    ///
    /// With a cache, `tokens` continue the cached sequence and the cache grows by `seq`.
    /// `steer[l]` `[rows, d]` (rows = 1 or the batch), when given, is added to layer l's
    /// attention output at the last position.
    pub fn hidden(&self, tokens: Tensor<2, Int>, valid: &[Vec<bool>], cache: Option<&mut KvCache>, steer: Option<&[Tensor<2>]>) -> Tensor<3> {
        self.hidden_tapped(tokens, valid, cache, steer, None)
    }

    /// Per layer, the attention block's output at the last position, `[batch, d]` each, for
    /// left-padded `tokens` (no cache): what emotion vectors are built from.
    pub fn attention_at_last(&self, tokens: Tensor<2, Int>, valid: &[Vec<bool>]) -> Vec<Tensor<2>> {
        let mut tap = Vec::with_capacity(self.num_layers());
        self.hidden_tapped(tokens, valid, None, None, Some(&mut tap));
        tap
    }

    /// [`CausalLm::hidden`] that also hands each layer's last-position attention output to `tap`.
    fn hidden_tapped(
        &self,
        tokens: Tensor<2, Int>,
        valid: &[Vec<bool>],
        cache: Option<&mut KvCache>,
        steer: Option<&[Tensor<2>]>,
        tap: Option<&mut Vec<Tensor<2>>>,
    ) -> Tensor<3> {
        let [b, t] = tokens.dims();
        let device = tokens.device();
        let d = self.model.embed_tokens.weight.dims()[1];
        let x = self.model.embed_tokens.weight.val().select(0, tokens.reshape([b * t])).reshape([b, t, d]);
        let mut local = KvCache::new(0, b);
        let cache_ref = match cache {
            Some(c) => c,
            None => &mut local,
        };
        let past = cache_ref.len();
        let capacity = cache_ref.reserve(t);
        // Positions count real tokens only, so a left-padded row starts at 0.
        let mut positions = vec![vec![0usize; t]; b];
        for (r, row) in valid.iter().enumerate() {
            let mut p = cache_ref.next_position[r];
            for (i, ok) in row.iter().enumerate() {
                positions[r][i] = p;
                if *ok {
                    p += 1;
                }
            }
            cache_ref.next_position[r] = p;
            cache_ref.valid[r].extend_from_slice(row);
        }
        let heads = self.model.layers.first().map_or(1, |l| l.self_attn.num_heads);
        let plain = capacity == t && valid.iter().all(|r| r.iter().all(|v| *v));
        let mask = match plain {
            true => Masking::Causal,
            false => Masking::Dense(causal_padding_mask(&cache_ref.valid, past, t, capacity, heads, &device)),
        };
        self.run_layers(x, &positions, mask, cache_ref, steer, tap)
    }

    /// Hidden states `[1, n, d]` of `tokens` that branch off row 0 of `cache` as a tree, in one
    /// pass: token i continues the first `branch[i]` cached positions when `parent[i]` is
    /// `None`, else it continues token `parent[i]` (< i). Each token sees exactly its ancestors
    /// and the cached prefix its root continues, at the positions that sequence gives it; the
    /// result equals running each root-to-leaf path alone. `cache` is left as it was.
    pub fn hidden_tree(&self, tokens: &[u32], parent: &[Option<usize>], branch: &[usize], cache: &KvCache) -> Tensor<3> {
        self.extend_tree(tokens, parent, branch, &mut cache.clone())
    }

    /// [`CausalLm::hidden_tree`] that keeps the tree's keys: row 0 of `cache` grows by
    /// `tokens.len()` positions in tree order (each token saw only its own path; a caller
    /// gathers one path per row from them, see [`crate::generate::prefill_shared`]).
    pub fn extend_tree(&self, tokens: &[u32], parent: &[Option<usize>], branch: &[usize], cache: &mut KvCache) -> Tensor<3> {
        let n = tokens.len();
        let device = self.model.embed_tokens.weight.device();
        let d = self.model.embed_tokens.weight.dims()[1];
        let ids = Tensor::<1, Int>::from_data(TensorData::new(tokens.iter().map(|t| *t as i64).collect(), [n]), &device);
        let x = self.model.embed_tokens.weight.val().select(0, ids).reshape([1, n, d]);
        let capacity = cache.reserve(n);
        let TreeMask { mask, positions } = TreeMask::new(parent, branch, cache);
        cache.valid[0].extend(std::iter::repeat_n(true, n));
        let (heads, kv_heads) = self.model.layers.first().map_or((1, 1), |l| (l.self_attn.num_heads, l.self_attn.num_kv_heads));
        if let Some(blocks) = TreeBlocks::plan(&mask, n, capacity, heads / kv_heads, &device) {
            return self.run_layers(x, &[positions], Masking::Blocks(blocks), cache, None, None);
        }
        let mask = Tensor::<4, Bool>::from_data(TensorData::new(mask, [1, 1, n, capacity]), &device).expand([1, heads, n, capacity]);
        self.run_layers(x, &[positions], Masking::Dense(mask), cache, None, None)
    }

    /// The decoder layers and final norm over embedded `x` at `positions`, under `mask`,
    /// growing `cache` when it has layers.
    fn run_layers(
        &self,
        x: Tensor<3>,
        positions: &[Vec<usize>],
        mask: Masking,
        cache: &mut KvCache,
        steer: Option<&[Tensor<2>]>,
        mut tap: Option<&mut Vec<Tensor<2>>>,
    ) -> Tensor<3> {
        let device = x.device();
        let head_dim = self.model.layers.first().map_or(2, |l| l.self_attn.head_dim);
        let (cos, sin) = rope::tables(positions, head_dim, self.rope_theta, &device);
        let t = x.dims()[1];
        let capacity = cache.capacity.max(t);
        let past = cache.len() - t;
        let ctx = AttentionContext { cos, sin, mask, past, capacity };
        let use_cache = !cache.layers.is_empty();
        let mut x = x;
        for (l, layer) in self.model.layers.iter().enumerate() {
            let c = if use_cache { Some(&mut cache.layers[l]) } else { None };
            x = layer.forward(x, &ctx, c, steer.and_then(|s| s.get(l)), tap.as_deref_mut());
        }
        self.model.norm.forward(x)
    }

    /// Logits for hidden rows `[n, d]` → `[n, V]` (the vocabulary projection).
    pub fn logits(&self, hidden: Tensor<2>) -> Tensor<2> {
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => crate::layers::project(hidden, self.model.embed_tokens.weight.val()),
        }
    }

    /// Full logits `[batch, seq, V]` for unpadded `tokens` (tests and golden checks).
    pub fn forward_logits(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let [b, t] = tokens.dims();
        let h = self.hidden(tokens, &vec![vec![true; t]; b], None, None);
        let d = h.dims()[2];
        let logits = self.logits(h.reshape([b * t, d]));
        let v = logits.dims()[1];
        logits.reshape([b, t, v])
    }
}

/// Which cache slots each token of a tree continuing row 0 of a cache sees, and its position.
pub struct TreeMask {
    /// `true` = masked, `tokens × capacity` row-major: a token sees the cached prefix its root
    /// continues (real tokens only), its ancestors and itself, which take the key slots after
    /// the cache's `len()` in tree order.
    pub mask: Vec<bool>,
    /// Each token's position id.
    pub positions: Vec<usize>,
}

impl TreeMask {
    /// The mask of the tree given by `parent` and `branch` (see [`CausalLm::hidden_tree`]) after
    /// `cache`, whose capacity already holds the tree's tokens ([`KvCache::reserve`]).
    pub fn new(parent: &[Option<usize>], branch: &[usize], cache: &KvCache) -> Self {
        let (n, past, capacity) = (parent.len(), cache.len(), cache.capacity);
        let (mut root_keys, mut positions) = (vec![0usize; n], vec![0usize; n]);
        let mut mask = vec![true; n * capacity];
        for i in 0..n {
            let row = &mut mask[i * capacity..(i + 1) * capacity];
            match parent[i] {
                None => {
                    root_keys[i] = branch[i].min(past);
                    positions[i] = cache.valid[0][..root_keys[i]].iter().filter(|v| **v).count();
                }
                Some(p) => {
                    root_keys[i] = root_keys[p];
                    positions[i] = positions[p] + 1;
                    let mut a = Some(p);
                    while let Some(j) = a {
                        row[past + j] = false;
                        a = parent[j];
                    }
                }
            }
            (0..root_keys[i]).filter(|j| cache.valid[0][*j]).for_each(|j| row[j] = false);
            row[past + i] = false;
        }
        Self { mask, positions }
    }
}

/// `true` where query i of row r must not see key j: j after the query, j is padding, or j is
/// a cache slot not written yet (up to `keys`, the capacity). A query with nothing to see (a
/// padded query) may see itself, so softmax stays finite.
fn causal_padding_mask(valid: &[Vec<bool>], past: usize, t: usize, keys: usize, heads: usize, device: &Device) -> Tensor<4, Bool> {
    let b = valid.len();
    let mut data = Vec::with_capacity(b * t * keys);
    for row in valid {
        for i in 0..t {
            let q = past + i;
            let start = data.len();
            data.extend((0..keys).map(|j| !(j <= q && row[j])));
            if data[start..].iter().all(|m| *m) {
                data[start + q] = false;
            }
        }
    }
    Tensor::<4, Bool>::from_data(TensorData::new(data, [b, 1, t, keys]), device).expand([b, heads, t, keys])
}
