//! Attention through burn's op, choosing the backend that computes it.

use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Tensor};

/// softmax(q kᵀ/√hd, masked) v by burn's attention: q `[b, H, t, hd]`, k and v `[b, H, s, hd]`,
/// mask `[b, H, t, s]` (`true` = masked) → `[b, H, t, hd]`. On an autodiff device with nothing
/// to differentiate (a frozen layer below the trainable ones) it runs on the inner backend,
/// whose fused kernel does not materialise the scores as autodiff's decomposed attention does,
/// and hands back a constant.
pub fn attend(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, mask: Option<Tensor<4, Bool>>, options: AttentionModuleOptions) -> Tensor<4> {
    if q.is_autodiff() && ![&q, &k, &v].iter().any(|t| t.is_tracked()) {
        return attention(q.inner(), k.inner(), v.inner(), mask.map(Tensor::inner), None, options).autodiff();
    }
    attention(q, k, v, mask, None, options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, Int};

    #[test]
    fn untracked_attention_runs_on_the_inner_backend_with_the_same_values() {
        let device = Device::flex().autodiff();
        let input = |shape: [usize; 4]| Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let (q, k, v) = (input([2, 4, 9, 8]), input([2, 4, 9, 8]), input([2, 4, 9, 8]));
        // about a third of the keys masked, never a query's own (a fully masked row has no softmax)
        let own = Tensor::<1, Int>::arange(0..9, &device);
        let diagonal = own.clone().reshape([9, 1]).equal(own.reshape([1, 9])).reshape([1, 1, 9, 9]).expand([2, 1, 9, 9]);
        let masked = Tensor::<4>::random([2, 1, 9, 9], Distribution::Uniform(0.0, 1.0), &device).lower_elem(0.3);
        let mask = masked.bool_and(diagonal.bool_not()).expand([2, 4, 9, 9]);
        let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: false };
        let constant = attend(q.clone(), k.clone(), v.clone(), Some(mask.clone()), options);
        let tracked = attend(q.require_grad(), k, v, Some(mask), options);
        assert!(constant.is_autodiff() && !constant.is_tracked(), "a constant on the autodiff device");
        assert!(tracked.is_tracked(), "a tracked query keeps the graph");
        let gap = (constant - tracked).abs().max().into_scalar::<f32>();
        assert!(gap < 1e-5, "fused and decomposed attention differ by {gap}");
    }
}
