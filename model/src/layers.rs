//! The decoder's building blocks. Field names are the HF checkpoint keys, and weights keep the
//! HF `[out, in]` layout, so loading and export are straight key maps.

use crate::attention::attend;
use crate::tree_attention::TreeBlocks;
use crate::{few_rows, rope};
use burn::module::{Module, Param};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Tensor, activation};
use burn::tensor::{DType, TensorData};
use burn_flex::{Flex, FlexTensor};

/// A bias-free projection y = x Wᵀ with W `[out, in]` (HF layout).
#[derive(Module, Debug)]
pub struct Proj {
    /// `[out, in]`.
    pub weight: Param<Tensor<2>>,
}

impl Proj {
    /// x `[n, in]` → `[n, out]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        project(x, self.weight.val())
    }
}

/// x `[n, in]` · Wᵀ for W `[out, in]`. For a few rows (decoding) on the CPU without autodiff
/// it runs by [`few_rows::x_wt`], which streams W once instead of repacking it; otherwise on the
/// CPU (autodiff, other dtypes), a few rows run as (W · xᵀ)ᵀ so that the matmul streams W as its
/// large operand. GPU backends take plain x · Wᵀ: on burn 0.22.1's wgpu backend the (W · xᵀ)ᵀ
/// form gave wrong attention outputs from 16 rows on (tests/backends.rs).
pub fn project(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
    project_many(x, vec![w]).pop().expect("one projection")
}

/// [`project`] of one x by several weights (q/k/v, gate/up): on the few-rows path they share
/// one parallel pass.
pub fn project_many(x: Tensor<2>, ws: Vec<Tensor<2>>) -> Vec<Tensor<2>> {
    let [m, k] = x.dims();
    if m <= FEW_ROWS
        && let Some(xf) = dense_f32(&x)
        && let Some(wf) = ws.iter().map(dense_f32).collect::<Option<Vec<_>>>()
    {
        let weights: Vec<(&[f32], usize)> = wf.iter().map(|w| (values(w), w.layout().shape()[0])).collect();
        return few_rows::x_wt_many(values(&xf), m, &weights, k)
            .into_iter()
            .zip(&weights)
            .map(|(out, (_, n))| Tensor::<2>::from_primitive::<Flex>(FlexTensor::from_data(TensorData::new(out, [m, *n]))))
            .collect();
    }
    let transposed = m <= FEW_ROWS && x.device() == Device::flex();
    ws.into_iter().map(|w| if transposed { w.matmul(x.clone().transpose()).transpose() } else { x.clone().matmul(w.transpose()) }).collect()
}

/// Up to this many rows, [`project`] takes its few-rows path.
const FEW_ROWS: usize = 32;

/// `t` as a dense f32 CPU tensor (copied only when it is a strided view), or `None` when it
/// lives elsewhere, tracks gradients, or holds another dtype.
fn dense_f32(t: &Tensor<2>) -> Option<FlexTensor> {
    let t = t.clone().try_into_primitive::<Flex>().ok().filter(|t| t.dtype() == DType::F32)?;
    Some(if t.as_slice::<f32>().is_some() { t } else { t.to_contiguous() })
}

/// The values of a dense f32 tensor.
fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("a dense f32 tensor")
}

/// RMSNorm: x / sqrt(mean(x²) + ε) · w, over the last dim.
#[derive(Module, Debug)]
pub struct RmsNorm {
    /// `[d]`.
    pub weight: Param<Tensor<1>>,
    /// ε.
    pub eps: f64,
}

impl RmsNorm {
    /// Normalises over the last dim of any rank.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let rms = x.clone().powf_scalar(2.0).mean_dim(D - 1).add_scalar(self.eps).sqrt();
        (x / rms) * self.weight.val().unsqueeze::<D>()
    }
}

/// Per-layer key/value cache: `[batch, kv_heads, capacity, head_dim]` each. Keys are written in
/// place at their position; slots past the cached length are zeros that the mask hides, so a
/// decode step neither copies nor reallocates the cache (see [`crate::KvCache::reserve`]).
#[derive(Debug, Clone, Default)]
pub struct LayerCache {
    /// Keys after RoPE and values, or `None` before the first call.
    pub kv: Option<(Tensor<4>, Tensor<4>)>,
}

impl LayerCache {
    /// Writes `k`, `v` `[batch, kv_heads, t, hd]` at key positions `past..past + t`, first
    /// growing the cache to `capacity` keys when it holds fewer; returns the whole cache.
    pub fn write(&mut self, k: Tensor<4>, v: Tensor<4>, past: usize, capacity: usize) -> (Tensor<4>, Tensor<4>) {
        let [b, heads, t, hd] = k.dims();
        let grown = |old: Option<Tensor<4>>, new: Tensor<4>| {
            let have = old.as_ref().map_or(0, |o| o.dims()[2]);
            let cache = match old {
                Some(old) if have >= capacity => old,
                None if past == 0 && t == capacity => return new,
                old => {
                    let zeros = Tensor::<4>::zeros([b, heads, capacity - have, hd], &new.device());
                    match old {
                        Some(old) => Tensor::cat(vec![old, zeros], 2),
                        None => zeros,
                    }
                }
            };
            cache.slice_assign([0..b, 0..heads, past..past + t, 0..hd], new)
        };
        let (pk, pv) = self.kv.take().unzip();
        let (k, v) = (grown(pk, k), grown(pv, v));
        self.kv = Some((k.clone(), v.clone()));
        (k, v)
    }
}

/// What every layer of one forward call shares: RoPE tables and the attention mask.
pub struct AttentionContext {
    /// cos table `[batch, 1, seq, hd]`.
    pub cos: Tensor<4>,
    /// sin table `[batch, 1, seq, hd]`.
    pub sin: Tensor<4>,
    /// Which keys each query sees.
    pub mask: Masking,
    /// Cached keys before this call: where its keys are written.
    pub past: usize,
    /// Keys the cache holds after this call (its capacity, ≥ past + seq); the mask's last dim.
    pub capacity: usize,
}

/// Which keys each query of a forward call sees.
// One per forward call, passed by reference to every layer: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Masking {
    /// Plain causal, no padding: query i sees keys 0..=past + i.
    Causal,
    /// `true` = masked, `[batch, heads, seq, keys]`.
    Dense(Tensor<4, Bool>),
    /// A prefix tree (batch 1) attended in blocks of queries against the keys each block sees.
    Blocks(TreeBlocks),
}

/// Grouped-query self-attention with optional q/k-norm (Qwen3).
#[derive(Module, Debug)]
pub struct Attention {
    /// `[H·hd, d]`.
    pub q_proj: Proj,
    /// `[KV·hd, d]`.
    pub k_proj: Proj,
    /// `[KV·hd, d]`.
    pub v_proj: Proj,
    /// `[d, H·hd]`.
    pub o_proj: Proj,
    /// Qwen3 per-head norm of q, `[hd]`.
    pub q_norm: Option<RmsNorm>,
    /// Qwen3 per-head norm of k, `[hd]`.
    pub k_norm: Option<RmsNorm>,
    /// H.
    pub num_heads: usize,
    /// KV.
    pub num_kv_heads: usize,
    /// hd.
    pub head_dim: usize,
}

impl Attention {
    /// x `[batch, seq, d]` → `[batch, seq, d]`; appends this call's keys and values to `cache`.
    pub fn forward(&self, x: Tensor<3>, ctx: &AttentionContext, cache: Option<&mut LayerCache>) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let (h, kv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let flat = x.reshape([b * t, d]);
        // 1. project and split heads: [b, heads, t, hd]
        let weights = vec![self.q_proj.weight.val(), self.k_proj.weight.val(), self.v_proj.weight.val()];
        let heads = |x: Tensor<2>, n: usize| x.reshape([b, t, n, hd]).swap_dims(1, 2);
        let [q, k, v]: [Tensor<2>; 3] = project_many(flat, weights).try_into().expect("three projections");
        let (mut q, mut k, v) = (heads(q, h), heads(k, kv), heads(v, kv));
        // 2. q/k-norm per head (Qwen3)
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            q = qn.forward(q);
            k = kn.forward(k);
        }
        // 3. rotate
        let q = rope::apply(q, &ctx.cos, &ctx.sin);
        let k = rope::apply(k, &ctx.cos, &ctx.sin);
        // 4. write into the cache
        let (k, v) = match cache {
            Some(c) => c.write(k, v, ctx.past, ctx.capacity),
            None => (k, v),
        };
        // 5. a prefix tree attends in blocks, each against the keys its queries see
        let mask = match &ctx.mask {
            Masking::Blocks(blocks) => {
                let out = blocks.attend(q, k, v).swap_dims(1, 2).reshape([b * t, h * hd]);
                return self.o_proj.forward(out).reshape([b, t, d]);
            }
            Masking::Dense(m) => Some(m.clone()),
            Masking::Causal => None,
        };
        // 6. share kv heads across their query group. One query per row (decoding): the
        // group's queries attend as a sequence of g against their kv head, with no K/V copies.
        let keys = k.dims()[2];
        if t == 1 && h != kv {
            let g = h / kv;
            let mask = mask.map(|m| m.reshape([b, kv, g, keys]));
            let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: false };
            let out = attend(q.reshape([b, kv, g, hd]), k, v, mask, options);
            return self.o_proj.forward(out.reshape([b, h * hd])).reshape([b, t, d]);
        }
        let repeat = |x: Tensor<4>| {
            if h == kv {
                return x;
            }
            x.unsqueeze_dim::<5>(2).expand([b, kv, h / kv, keys, hd]).reshape([b, h, keys, hd])
        };
        let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: mask.is_none() };
        let out = attend(q, repeat(k), repeat(v), mask, options);
        // 7. merge heads and project out
        let out = out.swap_dims(1, 2).reshape([b * t, h * hd]);
        self.o_proj.forward(out).reshape([b, t, d])
    }
}

/// SwiGLU feed-forward: down(silu(gate x) ⊙ up x).
#[derive(Module, Debug)]
pub struct Mlp {
    /// `[ffn, d]`.
    pub gate_proj: Proj,
    /// `[ffn, d]`.
    pub up_proj: Proj,
    /// `[d, ffn]`.
    pub down_proj: Proj,
}

impl Mlp {
    /// x `[n, d]` → `[n, d]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let [gate, up]: [Tensor<2>; 2] = project_many(x, vec![self.gate_proj.weight.val(), self.up_proj.weight.val()]).try_into().expect("two projections");
        self.down_proj.forward(activation::silu(gate) * up)
    }
}

/// One pre-norm decoder layer.
#[derive(Module, Debug)]
pub struct DecoderLayer {
    /// Attention block.
    pub self_attn: Attention,
    /// Feed-forward block.
    pub mlp: Mlp,
    /// Norm before attention.
    pub input_layernorm: RmsNorm,
    /// Norm before the feed-forward.
    pub post_attention_layernorm: RmsNorm,
}

impl DecoderLayer {
    /// x `[batch, seq, d]` → `[batch, seq, d]`. `steer` `[rows, d]` (rows = 1 for every row
    /// alike, or `batch`, one vector per row) is added to the attention output at the last
    /// position when given; `tap` receives the attention output at the last
    /// position, `[batch, d]` (before steering), when given.
    pub fn forward(
        &self,
        x: Tensor<3>,
        ctx: &AttentionContext,
        cache: Option<&mut LayerCache>,
        steer: Option<&Tensor<2>>,
        tap: Option<&mut Vec<Tensor<2>>>,
    ) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let mut attn = self.self_attn.forward(self.input_layernorm.forward(x.clone()), ctx, cache);
        if let Some(tap) = tap {
            tap.push(attn.clone().slice([0..b, t - 1..t, 0..d]).reshape([b, d]));
        }
        if let Some(s) = steer {
            let last = attn.clone().slice([0..b, t - 1..t, 0..d]) + s.clone().unsqueeze_dim::<3>(1);
            attn = attn.slice_assign([0..b, t - 1..t, 0..d], last);
        }
        let x = x + attn;
        let h = self.post_attention_layernorm.forward(x.clone()).reshape([b * t, d]);
        x + self.mlp.forward(h).reshape([b, t, d])
    }
}
