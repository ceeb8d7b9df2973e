//! Exact resume on the real default model (2 layers, tiny budgets, a warm start, β > 0): 4 steps
//! straight equal 2 steps, a stop at the end of self-play iteration 1, and 2 resumed steps (same
//! samples, rewards and flywheel rows; float statistics and weights to flex's summation-order
//! noise; the same KL reference, the warm-started policy); also across an epoch boundary and
//! after a checkpoint write that died half way (a killed `selfemo train`: selfemo-cli's tests).

mod common;

use common::{config, config_with, weight_gap};
use selfemo_trainer::run::{TrainOptions, train};
use std::path::Path;

/// Two runs of one process agree to flex's summation-order noise.
fn same_rows(a: &[selfemo_trainer::metrics_log::Row], b: &[selfemo_trainer::metrics_log::Row]) {
    common::assert_same_rows(a, b, 1e-9, 1e-15);
}

#[test]
fn resumed_run_equals_uninterrupted_run() {
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
    // The KL reference is the policy as the warm start left it: KL 0 at the first GRPO step, and
    // the resumed run read the same one back from reference.bpk (its KL equals the straight run's).
    assert!(straight.grpo.beta > 0.0 && straight.warm_start.steps > 0);
    assert!(a.rows[0].values["kl"].abs() < 1e-9, "KL at the first step: {}", a.rows[0].values["kl"]);
    assert!(a.rows[3].values["kl"] > 0.0, "the policy moved away from its reference");
    assert!(b.run_dir.join("reference.bpk").is_file());
    same_rows(&a.rows, &b.rows);
    assert!(weight_gap(&a.run_dir, &b.run_dir) < 1e-6, "final weights equal");
    // The stop fell on the end of iteration 1: the resumed run read its flywheel and went on.
    for k in 1..=2 {
        let read = |run: &Path| selfemo_selfplay::store::read(&run.join(format!("iter-{k}/flywheel.parquet"))).unwrap();
        assert_eq!(read(&a.run_dir), read(&b.run_dir), "iteration {k}'s flywheel");
    }
    assert_eq!(a.iterations, b.iterations);
    assert!(a.rows.iter().any(|r| r.values["grad_norm"] > 0.0), "the run trained");
    let trl = [
        "loss",
        "reward",
        "reward_std",
        "rewards/format/mean",
        "frac_reward_zero_std",
        "kl",
        "entropy",
        "clip_ratio/low_mean",
        "clip_ratio/high_mean",
        "completions/mean_length",
        "completions/clipped_ratio",
        "grad_norm",
        "learning_rate",
        "timing/generate",
        "timing/score",
        "timing/update",
        "tokens_per_second",
    ];
    let missing: Vec<&str> = trl.iter().copied().filter(|k| !a.rows[0].values.contains_key(*k)).collect();
    assert!(missing.is_empty(), "metrics.parquet lacks {missing:?}");
    assert!(a.rows.iter().all(|r| r.values["entropy"] > 0.0), "sampling at temperature 1.5 has entropy");
}

#[test]
fn resuming_on_an_epoch_boundary_trains_the_remaining_steps() {
    // 4 train prompts, 2 per step: the checkpoint after step 2 closes the first epoch.
    let dir = tempfile::tempdir().unwrap();
    let Some(straight) = config_with(dir.path(), "straight", "train_limit = 4") else { return };
    let a = train(&straight, TrainOptions::default()).unwrap();
    let split = config_with(dir.path(), "split", "train_limit = 4").unwrap();
    train(&split, TrainOptions { stop_after: Some(2), ..Default::default() }).unwrap();
    let b = train(&split, TrainOptions { resume: true, ..Default::default() }).unwrap();
    assert_eq!(b.rows.len(), 4, "the second epoch ran after the resume");
    assert!(b.dev_after.is_some());
    assert!(weight_gap(&a.run_dir, &b.run_dir) < 1e-6, "final weights equal");
}

#[test]
fn dynamic_sampling_replaces_degenerate_groups_reproducibly() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str| {
        let mut c = config(dir.path(), name)?;
        c.grpo.degenerate_groups = selfemo_trainer::grpo::DegenerateGroups::Resample;
        Some(train(&c, TrainOptions { stop_after: Some(2), ..Default::default() }).unwrap())
    };
    let Some(a) = run("resample-a") else { return };
    let b = run("resample-b").unwrap();
    let events = std::fs::read_to_string(a.run_dir.join("events.log")).unwrap();
    assert!(events.contains("resampled"), "degenerate groups were replaced:\n{events}");
    same_rows(&a.rows, &b.rows);
}
