//! The tiny run the resume and data-parallel tests share (the real default model cut to 2
//! layers), how two of its runs are compared, and the device and update settings of the
//! tiny-vocabulary SELF-GRPO tests.
#![allow(dead_code)]

use burn::tensor::Device;
use selfemo_rewards::ScaleRewards;
use selfemo_trainer::config::RunConfig;
use selfemo_trainer::grpo::{DegenerateGroups, UpdateSettings};
use selfemo_trainer::loss::{Clip, LossType};
use selfemo_trainer::metrics_log::Row;
use std::path::Path;

/// The tiny run named `name` under `dir`; `None` (the test skips) without the default model.
pub fn config(dir: &Path, name: &str) -> Option<RunConfig> {
    config_with(dir, name, "")
}

/// The tiny run, with `data` lines added to its [data] section.
pub fn config_with(dir: &Path, name: &str, data: &str) -> Option<RunConfig> {
    selfemo_model::fetch::default_model_for_tests()?;
    let text = format!(
        "name = \"{name}\"\noutput_dir = \"{}\"\nseed = 3\n[model]\nmax_layers = 2\ntrainable = {{ kind = \"top_layers\", layers = 1 }}\n\
         [data]\ncontext_window = 1\nmax_prompt_tokens = 120\n{data}\n\
         [grpo]\nnum_generations = 2\nprompts_per_step = 2\nmax_steps = 4\nmax_completion_length = 6\nlearning_rate = 1e-3\nsave_steps = 2\ntemperature = 1.5\n\
         [eval]\ndev_limit = 2\nmax_new_tokens = 4\ntest_limit = 2\n\
         [prompt]\nreply_prefix = \"<think>x</think><answer>\"\n[warm_start]\nsteps = 2\nbatch_size = 2\nlearning_rate = 3e-3\n",
        dir.display()
    );
    let c: RunConfig = toml::from_str(&text).unwrap();
    c.validate().unwrap();
    Some(c)
}

/// The tiny run for data-parallel tests, written to `<dir>/<name>.toml`: 4 prompt groups per
/// step (2 per rank of 2), 2 update and 2 SFT micro-batches (one per rank, the passes one
/// process runs too), a checkpoint every step, and β = 0. The cut 2-layer model earns equal
/// rewards in every group, so its SELF-GRPO gradients are exactly 0 whatever the ranks; the
/// warm start carries the gradients that the all-reduce must sum exactly
/// (`trainer/tests/data_parallel.rs` checks updates with signal).
pub fn data_parallel(dir: &Path, name: &str) -> Option<(RunConfig, std::path::PathBuf)> {
    let mut c = config(dir, name)?;
    c.grpo.prompts_per_step = 4;
    c.grpo.gradient_accumulation_steps = 2;
    c.grpo.max_steps = 3;
    c.grpo.save_steps = 1;
    c.warm_start.steps = 8;
    c.warm_start.batch_size = 4;
    c.warm_start.gradient_accumulation_steps = 2;
    c.grpo.beta = 0.0;
    (c.eval.dev_limit, c.eval.test_limit) = (5, 5);
    c.selfplay.responder_prompts_per_step = 4;
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, toml::to_string(&c).unwrap()).unwrap();
    Some((c, path))
}

/// Asserts two runs' metric rows agree, less timings and traffic: every sampled token, reward
/// and count exactly, and the float statistics (loss, KL, entropy, gradient norm) within
/// `rel` relative plus `floor` absolute. flex sums in parallel in an order that can vary between
/// runs, so a gradient norm or an entropy can differ in its last bits.
pub fn assert_same_rows(a: &[Row], b: &[Row], rel: f64, floor: f64) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.step, y.step);
        let keys = |r: &Row| {
            r.values.keys().filter(|k| !k.starts_with("timing/") && !k.starts_with("comm/") && *k != "tokens_per_second").cloned().collect::<Vec<_>>()
        };
        assert_eq!(keys(x), keys(y), "step {}", x.step);
        for k in keys(x) {
            let (p, q) = (x.values[&k], y.values[&k]);
            let exact = ["reward", "flywheel/", "selfplay/", "completions/", "responder/"].iter().any(|e| k.starts_with(e));
            let close = if exact { p.to_bits() == q.to_bits() } else { (p - q).abs() <= rel * p.abs().max(q.abs()) + floor };
            assert!(close, "step {} {k}: {p} vs {q}", x.step);
        }
    }
}

/// Largest difference between two runs' final weights (f32 safetensors of the same layout).
pub fn weight_gap(a: &Path, b: &Path) -> f32 {
    let read = |run: &Path| std::fs::read(run.join("final/model.safetensors")).unwrap();
    let (x, y) = (read(a), read(b));
    let header = 8 + u64::from_le_bytes(x[..8].try_into().unwrap()) as usize;
    assert_eq!(x[..header], y[..header], "same tensors, same layout");
    let floats = |v: &[u8]| v[header..].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect::<Vec<_>>();
    floats(&x).iter().zip(floats(&y)).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max)
}

/// Update settings for a tiny vocabulary: pad 0, temperature 1, clip at norm 1.
pub fn update_settings(clip: Clip, loss_type: LossType, max_completion_length: usize, num_iterations: usize) -> UpdateSettings {
    UpdateSettings {
        clip,
        loss_type,
        scale_rewards: ScaleRewards::Group,
        advantage_epsilon: 1e-4,
        max_completion_length,
        mask_truncated_completions: false,
        temperature: 1.0,
        max_grad_norm: 1.0,
        num_iterations,
        gradient_accumulation_steps: 1,
        importance_cap: 1.0,
        prefix_sharing: false,
        max_tree_tokens: 0,
        degenerate_groups: DegenerateGroups::Keep,
        pad: 0,
    }
}

/// The device these tests train on: `$SELFEMO_TEST_DEVICE` (`wgpu`, `cuda:0`, in a build with that
/// feature: scripts/test, scripts/gpu-check), else the CPU; with autodiff.
pub fn train_device() -> Device {
    let name = std::env::var("SELFEMO_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    selfemo_model::parse_device(&name).unwrap_or_else(|e| panic!("SELFEMO_TEST_DEVICE: {e}")).autodiff()
}
