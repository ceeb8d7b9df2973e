//! Exact resume on the real default model (2 layers, tiny budgets): 4 steps straight equal
//! 2 steps, a stop, and 2 resumed steps, bitwise; also across an epoch boundary and after a
//! checkpoint write that died half way.

use selfemo_trainer::config::RunConfig;
use selfemo_trainer::run::{TrainOptions, train};
use std::path::Path;

fn config(dir: &Path, name: &str) -> Option<RunConfig> {
    selfemo_model::fetch::default_model_for_tests()?;
    let text = format!(
        "name = \"{name}\"\noutput_dir = \"{}\"\nseed = 3\n[model]\nmax_layers = 2\ntrainable = {{ kind = \"top_layers\", layers = 1 }}\n\
         [data]\ncontext_window = 1\nmax_prompt_tokens = 120\n\
         [grpo]\nnum_generations = 2\nprompts_per_step = 2\nmax_steps = 4\nmax_completion_length = 6\nlearning_rate = 1e-3\nsave_steps = 2\ntemperature = 1.5\n\
         [eval]\ndev_limit = 2\nmax_new_tokens = 4\n",
        dir.display()
    );
    let c: RunConfig = toml::from_str(&text).unwrap();
    c.validate().unwrap();
    Some(c)
}

fn weights(run: &Path) -> Vec<u8> {
    std::fs::read(run.join("final/model.safetensors")).unwrap()
}

#[test]
fn resumed_run_equals_uninterrupted_run_bitwise() {
    let dir = tempfile::tempdir().unwrap();
    let Some(straight) = config(dir.path(), "straight") else { return };
    let a = train(&straight, TrainOptions::default()).unwrap();

    let split = config(dir.path(), "split").unwrap();
    let first = train(&split, TrainOptions { stop_after: Some(2), ..Default::default() }).unwrap();
    assert!(first.dev_after.is_none());
    assert_eq!(first.rows.len(), 2);
    // A checkpoint write killed half way leaves a temporary folder and an untouched `latest`.
    let ckpt = first.run_dir.join("checkpoints");
    std::fs::create_dir_all(ckpt.join(".step-3.tmp-999")).unwrap();
    std::fs::write(ckpt.join(".step-3.tmp-999/model.bpk"), b"half written").unwrap();
    assert_eq!(std::fs::read_to_string(ckpt.join("latest")).unwrap(), "step-2");

    let b = train(&split, TrainOptions { resume: true, ..Default::default() }).unwrap();
    assert_eq!(a.rows.len(), 4);
    for (x, y) in a.rows.iter().zip(&b.rows) {
        let strip = |r: &selfemo_trainer::metrics_log::Row| {
            r.values.iter().filter(|(k, _)| !k.starts_with("timing/") && *k != "tokens_per_second").map(|(k, v)| (k.clone(), v.to_bits())).collect::<Vec<_>>()
        };
        assert_eq!(x.step, y.step);
        assert_eq!(strip(x), strip(y), "step {}", x.step);
    }
    assert_eq!(weights(&a.run_dir), weights(&b.run_dir), "final weights bitwise equal");
    assert!(a.rows.iter().any(|r| r.values["grad_norm"] > 0.0), "the run trained");
}
