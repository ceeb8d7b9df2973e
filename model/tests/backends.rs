//! The wgpu path against flex on the same weights (issue #20). On the CPU a decode step's
//! projections run by the hand-written few-rows kernel; on wgpu they fall back to burn's matmul.
//! Both must give the same logits. Runs in a build with `--features wgpu` and a Vulkan device
//! (Mesa's lavapipe under CI: scripts/test).
#![cfg(feature = "wgpu")]

mod common;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use common::*;
use selfemo_model::generate::left_pad;
use selfemo_model::{Architecture, CausalLm, KvCache, ModelConfig};

/// Logits of a prefill of `rows` and then `steps` decode steps of one token per row, flattened.
fn prefill_then_decode(model: &CausalLm, rows: &[Vec<u32>], steps: usize, device: &Device) -> Vec<Vec<f64>> {
    let n = rows.len();
    let (ids, valid) = left_pad(rows, 0, device);
    let mut cache = KvCache::new(model.num_layers(), n);
    let h = model.hidden(ids, &valid, Some(&mut cache), None);
    let [_, t, d] = h.dims();
    let mut out = vec![logit_values(model, h.slice([0..n, t - 1..t, 0..d]).reshape([n, d]))];
    for step in 0..steps {
        let next: Vec<i64> = (0..n).map(|r| ((5 + 11 * step + 3 * r) % 90) as i64).collect();
        let x = Tensor::<2, Int>::from_data(TensorData::new(next, [n, 1]), device);
        let h = model.hidden(x, &vec![vec![true]; n], Some(&mut cache), None);
        out.push(logit_values(model, h.reshape([n, d])));
    }
    out
}

fn logit_values(model: &CausalLm, hidden: Tensor<2>) -> Vec<f64> {
    model.logits(hidden).into_data().try_to_vec::<f32>().unwrap().into_iter().map(f64::from).collect()
}

#[test]
fn wgpu_prefill_and_decode_steps_equal_the_cpu_few_rows_kernel() {
    let wgpu = selfemo_model::parse_device("wgpu").unwrap();
    // A ragged batch, and one row of 16 tokens: burn 0.22.1's wgpu backend got (W·xᵀ)ᵀ wrong
    // inside the attention block from 16 rows on (logits off by up to 0.1), which is why that
    // form of the few-rows product is used on flex only (layers::project_many).
    let batches = [vec![vec![3, 17, 42, 5, 9, 11, 60], vec![7, 8], vec![50, 1, 2, 3, 4]], vec![(0..16).map(|i| (7 * i + 3) % 90).collect()]];
    for arch in [Architecture::Llama, Architecture::Qwen3] {
        let on_cpu = CausalLm::random(&ModelConfig::tiny(arch), 1, &Device::flex());
        let on_gpu = on_cpu.clone().to_device(&wgpu);
        for rows in &batches {
            let cpu = prefill_then_decode(&on_cpu, rows, 4, &Device::flex());
            let gpu = prefill_then_decode(&on_gpu, rows, 4, &wgpu);
            for (step, (c, g)) in cpu.iter().zip(&gpu).enumerate() {
                let diff = max_diff(c, g);
                assert!(diff < 1e-4, "{arch:?}, {} rows, step {step}: wgpu and flex logits differ by {diff}", rows.len());
            }
        }
    }
}
