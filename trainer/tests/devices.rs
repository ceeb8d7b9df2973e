//! A run over several devices of one process (`devices`, one thread per device) equals the
//! one-process run of the same config: the same samples, rewards and flywheel rows, the float
//! statistics and weights to summation-order noise, the same dev and test reports. By default
//! the devices are two flex CPUs, whose gradients are summed through memory;
//! `SELFEMO_TEST_DEVICES=cuda:0,cuda:1` (with `--features cuda`, `scripts/gpu-check` on a
//! machine with two GPUs) runs the same threads with burn's NCCL all-reduce, against a
//! one-process run on the first device.

mod common;

use selfemo_trainer::checkpoint::State;
use selfemo_trainer::collective::{Collective, Threads};
use selfemo_trainer::config::RunConfig;
use selfemo_trainer::metrics_log::Row;
use selfemo_trainer::run::{TrainOptions, train};
use std::path::Path;

fn rows(run: &Path) -> Vec<Row> {
    let dir = selfemo_trainer::checkpoint::latest(run).expect("a checkpoint");
    serde_json::from_slice::<State>(&std::fs::read(dir.join("state.json")).unwrap()).unwrap().rows
}

#[test]
fn two_cpu_devices_train_as_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let Some((one, _)) = common::data_parallel(dir.path(), "one") else { return };
    let (mut two, _) = common::data_parallel(dir.path(), "two").unwrap();
    two.devices = std::env::var("SELFEMO_TEST_DEVICES").unwrap_or_else(|_| "cpu,cpu".into()).split(',').map(|d| d.trim().to_string()).collect();
    let one = RunConfig { device: two.devices[0].clone(), ..one };
    two.validate().unwrap();
    let a = train(&one, TrainOptions::default()).unwrap();
    let b = train(&two, TrainOptions::default()).unwrap();

    let (ra, rb) = (rows(&a.run_dir), rows(&b.run_dir));
    assert_eq!(rb.len(), 3);
    common::assert_same_rows(&ra, &rb, 1e-5, 1e-7);
    for r in &rb {
        assert!(r.values["comm/update_bytes"] > 0.0 && r.values["comm/rollout_bytes"] > 0.0, "step {}: traffic is counted", r.step);
    }
    let gap = common::weight_gap(&a.run_dir, &b.run_dir);
    assert!(gap < 1e-6, "final weights: {gap}");
    for k in 1..=one.selfplay.iterations {
        let read = |run: &Path| selfemo_selfplay::store::read(&run.join(format!("iter-{k}/flywheel.parquet"))).unwrap();
        assert_eq!(read(&a.run_dir), read(&b.run_dir), "iteration {k}: the same flywheel rows");
    }
    let read = |run: &Path, file: &str| std::fs::read_to_string(run.join(file)).unwrap();
    assert_eq!(read(&a.run_dir, "test.json"), read(&b.run_dir, "test.json"), "the same test report");
    let dev = |o: &selfemo_trainer::run::Outcome| o.curve.iter().map(|e| (e.stage.clone(), e.dev.clone())).collect::<Vec<_>>();
    assert_eq!(dev(&a), dev(&b), "the same dev evaluations");
    // The run folder records the device list, so that --resume runs over the same devices.
    let recorded: RunConfig = toml::from_str(&read(&b.run_dir, "config.toml")).unwrap();
    assert_eq!(recorded.devices, two.devices);
}

#[test]
fn a_device_list_is_checked_and_not_combined_with_other_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut c) = common::config(dir.path(), "bad") else { return };
    c.devices = vec!["cpu".into(), "tpu".into()];
    let err = c.validate().unwrap_err();
    assert!(err.contains("devices[1]") && err.contains("tpu"), "{err}");
    c.devices = vec!["cpu".into(), "cpu".into()];
    let world = Threads::world(2, None);
    let err = train(&c, TrainOptions { collective: Some(&world[0] as &dyn Collective), ..Default::default() }).unwrap_err().to_string();
    assert!(err.contains("devices") && err.contains("MPI"), "{err}");
}
