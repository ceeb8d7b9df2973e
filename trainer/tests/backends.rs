//! SELF-GRPO on wgpu against flex (issue #20): from the same weights and the same rollouts, one
//! update with β > 0 gives the same loss, KL, gradient norm and updated weights on both backends.
//! Runs in a build with `--features wgpu` and a Vulkan device (Mesa's lavapipe under CI:
//! scripts/test).
#![cfg(feature = "wgpu")]

mod common;

use burn::tensor::Device;
use common::update_settings;
use selfemo_model::{Architecture, CausalLm, ModelConfig, SamplingConfig, parse_device};
use selfemo_trainer::grpo::{Group, UpdateStats, rollout, update};
use selfemo_trainer::loss::{Clip, LossType};
use selfemo_trainer::optim::{AdamWSettings, LrSchedule};

fn config() -> ModelConfig {
    ModelConfig { vocab_size: 16, ..ModelConfig::tiny(Architecture::Llama) }
}

/// One update on `device` of the seeded policy against a seeded reference unlike it (so that
/// the KL term, β = 0.04, is far from zero): its statistics and the first layer's updated q
/// projection. Both models are built from host-side seeded values, the same on every device.
fn one_step(groups: &[Group], device: &Device) -> (UpdateStats, Vec<f32>) {
    let settings = update_settings(Clip { epsilon: 0.2, epsilon_high: 0.28, beta: 0.04 }, LossType::Dapo, 3, 1);
    let model = CausalLm::random(&config(), 11, device);
    let reference = CausalLm::random(&config(), 12, &device.clone().without_autodiff());
    let mut optim = AdamWSettings::default().build();
    let (model, stats) = update(model, Some(&reference), &mut optim, groups, &settings, &LrSchedule::constant(1e-2), 0);
    let q = model.model.layers[0].self_attn.q_proj.weight.val().into_data().try_to_vec::<f32>().unwrap();
    (stats.expect("a finite step"), q)
}

#[test]
fn one_self_grpo_step_on_wgpu_equals_flex() {
    let cpu = Device::flex().autodiff();
    let policy = CausalLm::random(&config(), 11, &Device::flex());
    let prompts: Vec<(usize, Vec<u32>)> = (0..3).map(|i| (i, vec![1, 2, 4 + i as u32, 3])).collect();
    let sampling = SamplingConfig { temperature: 1.0, max_new_tokens: 3, ..Default::default() };
    let mut groups = rollout(&policy, &prompts, 4, &sampling, 7, 0, &[], 0);
    for (i, s) in groups.iter_mut().flat_map(|g| g.samples.iter_mut()).enumerate() {
        s.reward = (i % 3) as f64;
    }
    let (on_cpu, q_cpu) = one_step(&groups, &cpu);
    let (on_gpu, q_gpu) = one_step(&groups, &parse_device("wgpu").unwrap().autodiff());
    eprintln!("flex: {on_cpu:?}\nwgpu: {on_gpu:?}");
    assert!(on_cpu.loss_stats.kl > 0.01, "the KL term is exercised: {}", on_cpu.loss_stats.kl);
    assert!(on_cpu.grad_norm > 1e-3, "the step moves the policy: gradient norm {}", on_cpu.grad_norm);
    for (what, a, b) in
        [("loss", on_cpu.loss, on_gpu.loss), ("KL", on_cpu.loss_stats.kl, on_gpu.loss_stats.kl), ("gradient norm", on_cpu.grad_norm, on_gpu.grad_norm)]
    {
        assert!((a - b).abs() <= 1e-3 * a.abs().max(1.0), "{what}: flex {a} vs wgpu {b}");
    }
    let gap = q_cpu.iter().zip(&q_gpu).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(gap < 1e-3, "updated weights differ by {gap} (a step moves a weight by about the rate, 1e-2)");
}
