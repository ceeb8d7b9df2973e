//! A `selfemo train` killed (SIGKILL) while it writes a checkpoint resumes from the previous
//! whole checkpoint and finishes the run.

#[path = "../../trainer/tests/common/mod.rs"]
mod common;

use selfemo_trainer::run::{TrainOptions, train};

#[test]
fn a_run_killed_during_a_checkpoint_write_resumes_from_the_previous_checkpoint() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let Some(mut c) = common::config(dir.path(), "killed") else { return };
    c.grpo.save_steps = 1;
    let path = dir.path().join("killed.toml");
    std::fs::write(&path, toml::to_string(&c).unwrap()).unwrap();
    let ckpt = c.run_dir().join("checkpoints");
    let mut child = Command::new(env!("CARGO_BIN_EXE_selfemo")).args(["train", path.to_str().unwrap()]).stdout(Stdio::null()).spawn().unwrap();
    // Wait for a write in progress after the first checkpoint exists, then SIGKILL the run.
    let writing = || std::fs::read_dir(&ckpt).is_ok_and(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with(".step-")));
    let started = std::time::Instant::now();
    while !(ckpt.join("step-1").is_dir() && writing()) {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before a second checkpoint write was seen");
        assert!(started.elapsed().as_secs() < 300, "no checkpoint write seen");
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let newest = selfemo_trainer::checkpoint::latest(&c.run_dir()).expect("a whole checkpoint survives");
    assert!(newest.join("model.bpk").is_file() && newest.join("optimizer.bpk").is_file(), "{}", newest.display());
    let resumed = train(&c, TrainOptions { resume: true, ..Default::default() }).unwrap();
    assert_eq!(resumed.rows.len(), 4);
    assert!(resumed.dev_after.is_some());
}
