//! Data-parallel training on MPI: `mpirun -np 2 selfemo train` equals the one-process run of
//! the same config (the same samples, rewards and flywheel rows; float statistics and weights
//! to summation-order noise), `selfemo eval` and `selfemo probe` on 2 ranks give one process's
//! reports, and a rank killed mid-run stops the whole run, which `--resume` then finishes. Needs the `mpi` feature and Open MPI's `mpirun`: `scripts/test` runs it under
//! CI=true (`cargo test -p selfemo-cli --features mpi --test mpi`); elsewhere it says why it
//! skips.

#[path = "../../trainer/tests/common/mod.rs"]
mod common;

use common::weight_gap;
use selfemo_trainer::checkpoint::State;
use selfemo_trainer::metrics_log::Row;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Whether the test can run here; prints why not (and fails under CI=true, where it must run).
fn mpi_available() -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let missing = if !cfg!(feature = "mpi") {
        Some("selfemo-cli built without the `mpi` feature")
    } else if Command::new("mpirun").arg("--version").output().is_err() {
        Some("no `mpirun` on PATH (apt-get install openmpi-bin libopenmpi-dev)")
    } else {
        None
    };
    match missing {
        Some(why) if ci && cfg!(feature = "mpi") => panic!("CI=true but {why}"),
        Some(why) => {
            eprintln!("skipped: {why}; scripts/test runs it under CI=true");
            false
        }
        None => true,
    }
}

fn mpirun(ranks: usize) -> Command {
    let mut cmd = Command::new("mpirun");
    // Root in containers, more ranks than cores on a 2-core CI machine, loopback only.
    cmd.args(["--allow-run-as-root", "--oversubscribe", "--mca", "btl", "self,tcp", "--mca", "btl_tcp_if_include", "lo", "-np", &ranks.to_string()]);
    cmd.arg(env!("CARGO_BIN_EXE_selfemo"));
    cmd
}

fn check(out: Output, what: &str) {
    assert!(out.status.success(), "{what} failed:\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

fn rows(run: &Path) -> Vec<Row> {
    let dir = selfemo_trainer::checkpoint::latest(run).expect("a checkpoint");
    serde_json::from_slice::<State>(&std::fs::read(dir.join("state.json")).unwrap()).unwrap().rows
}

/// A data-parallel run against one process: rollouts batched differently (f32 noise), the
/// same samples.
fn assert_same_rows(a: &[Row], b: &[Row]) {
    common::assert_same_rows(a, b, 1e-5, 1e-7);
}

fn flywheels(run: &Path, iterations: usize) -> Vec<Vec<selfemo_selfplay::FlywheelRow>> {
    (1..=iterations).map(|k| selfemo_selfplay::store::read(&run.join(format!("iter-{k}/flywheel.parquet"))).unwrap()).collect()
}

#[test]
fn two_ranks_train_as_one_process_and_a_lost_rank_stops_the_run() {
    if !mpi_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some((one, one_toml)) = common::data_parallel(dir.path(), "one") else { return };
    let (two, two_toml) = common::data_parallel(dir.path(), "two").unwrap();
    check(Command::new(env!("CARGO_BIN_EXE_selfemo")).args(["train", one_toml.to_str().unwrap()]).output().unwrap(), "one process");
    let started = Instant::now();
    check(mpirun(2).args(["train", two_toml.to_str().unwrap()]).output().unwrap(), "mpirun -np 2");
    eprintln!("mpirun -np 2: {:.1} s", started.elapsed().as_secs_f64());

    let (a, b) = (rows(&one.run_dir()), rows(&two.run_dir()));
    assert_eq!(b.len(), 3);
    assert_same_rows(&a, &b);
    for r in &b {
        assert!(r.values["comm/update_bytes"] > 0.0 && r.values["comm/rollout_bytes"] > 0.0, "step {}: traffic is counted", r.step);
        eprintln!(
            "step {}: update all-reduce {:.1} MB in {:.3} s, rollouts gathered {:.1} kB in {:.3} s",
            r.step,
            r.values["comm/update_bytes"] / 1e6,
            r.values["comm/update_seconds"],
            r.values["comm/rollout_bytes"] / 1e3,
            r.values["comm/rollout_seconds"]
        );
    }
    assert!(!a[0].values.contains_key("comm/update_bytes"), "one process sends nothing");
    let gap = weight_gap(&one.run_dir(), &two.run_dir());
    eprintln!("largest weight difference after 3 steps: {gap:e}");
    assert!(gap < 1e-6, "final weights: {gap}");
    let iterations = one.selfplay.iterations;
    assert_eq!(flywheels(&one.run_dir(), iterations), flywheels(&two.run_dir(), iterations), "the same flywheel rows");
    // Evaluation sharded over the ranks: the same dev curve, test report and predictions.
    let read = |run: PathBuf, file: &str| std::fs::read_to_string(run.join(file)).unwrap();
    assert_eq!(read(one.run_dir(), "test.json"), read(two.run_dir(), "test.json"), "the same test report");
    let curve = |run: PathBuf| selfemo_trainer::evaluation::read_dev_curve(&run).unwrap().into_iter().map(|e| (e.stage, e.dev)).collect::<Vec<_>>();
    assert_eq!(curve(one.run_dir()), curve(two.run_dir()), "the same dev evaluations");
    for mode in ["score", "generate"] {
        let predictions = |run: PathBuf| selfemo_eval::predictions::read(&run.join(format!("test-{mode}.predictions.parquet"))).unwrap();
        let (p, q) = (predictions(one.run_dir()), predictions(two.run_dir()));
        assert_eq!(p.len(), one.eval.test_limit);
        // The same answers; score mode's log-probs to the noise of other tree batches.
        for (x, y) in p.iter().zip(&q) {
            assert_eq!((&x.text, x.turn), (&y.text, y.turn), "{mode}: the same per-target predictions");
            let (lx, ly) = (x.label_logprobs.clone().unwrap_or_default(), y.label_logprobs.clone().unwrap_or_default());
            assert_eq!(lx.len(), ly.len());
            assert!(lx.iter().zip(&ly).all(|(a, b)| (a - b).abs() < 1e-4), "{mode}: {lx:?} vs {ly:?}");
        }
    }

    eval_and_probes_on_two_ranks_equal_one_process(&one.run_dir().join("final"), dir.path());

    // A rank killed after the first checkpoint: the launcher ends the whole run, promptly.
    let (killed, killed_toml) = common::data_parallel(dir.path(), "killed").unwrap();
    let mut run = mpirun(2).args(["train", killed_toml.to_str().unwrap()]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let first = killed.run_dir().join("checkpoints/step-1/state.json");
    let started = Instant::now();
    while !first.is_file() {
        assert!(run.try_wait().unwrap().is_none(), "the run ended before its first checkpoint");
        assert!(started.elapsed() < Duration::from_secs(600), "no checkpoint");
        std::thread::sleep(Duration::from_millis(50));
    }
    let rank1 = rank_pid(1, &killed_toml).expect("rank 1 is running");
    Command::new("kill").args(["-9", &rank1.to_string()]).status().unwrap();
    let killed_at = Instant::now();
    let status = loop {
        if let Some(s) = run.try_wait().unwrap() {
            break s;
        }
        assert!(killed_at.elapsed() < Duration::from_secs(60), "the run hangs after losing a rank");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(run.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    eprintln!("after the kill the run stopped in {:.1} s: {status}; mpirun said:\n{stderr}", killed_at.elapsed().as_secs_f64());
    assert!(!status.success(), "a run that lost a rank must fail");
    assert!(stderr.contains("signal 9") || stderr.contains("Killed") || stderr.contains("exited"), "the launcher names the lost rank:\n{stderr}");
    let last = selfemo_trainer::checkpoint::latest(&killed.run_dir()).expect("a whole checkpoint survives");
    check(mpirun(2).args(["train", killed_toml.to_str().unwrap(), "--resume"]).output().unwrap(), "mpirun -np 2 --resume");
    let events = std::fs::read_to_string(killed.run_dir().join("events.log")).unwrap();
    assert!(events.contains(&format!("resumed from {}", last.display())), "{events}");
    let resumed = rows(&killed.run_dir());
    assert_same_rows(&a, &resumed);
    assert!(weight_gap(&one.run_dir(), &killed.run_dir()) < 1e-6, "the resumed run ends where one process does");
}

/// `selfemo eval` (both modes) and both probes of `model` on 2 ranks against one process: the
/// same reports (less their timings) and the same per-target predictions.
fn eval_and_probes_on_two_ranks_equal_one_process(model: &Path, dir: &Path) {
    let model = model.to_str().unwrap();
    let commands: [&[&str]; 4] = [
        &["eval", "--mode", "score", "--batch", "2"],
        &["eval", "--mode", "generate", "--max-new-tokens", "4", "--batch", "2"],
        &["probe", "hallucination", "--batch", "2"],
        &["probe", "faithfulness", "--max-new-tokens", "6", "--batch", "2"],
    ];
    for (k, command) in commands.iter().enumerate() {
        let out = |ranks: usize| dir.join(format!("{k}-{ranks}.json"));
        let common = ["--model", model, "--limit", "7", "--context-window", "1", "--max-prompt-tokens", "120"];
        let mut one = Command::new(env!("CARGO_BIN_EXE_selfemo"));
        check(one.args(*command).args(common).arg("--out").arg(out(1)).output().unwrap(), &format!("{command:?}"));
        check(mpirun(2).args(*command).args(common).arg("--out").arg(out(2)).output().unwrap(), &format!("mpirun -np 2 {command:?}"));
        let report = |ranks: usize| {
            let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(out(ranks)).unwrap()).unwrap();
            v["meld"].as_object_mut().unwrap().remove("seconds");
            v
        };
        let (a, b) = (report(1), report(2));
        assert!(a["meld"].as_object().unwrap().len() > 1, "{command:?}: a report: {a}");
        assert_eq!(a, b, "{command:?}: 2 ranks report what one process does");
        eprintln!("{command:?} on 2 ranks = one process: {}", a["meld"]);
        if command[0] == "eval" {
            let predictions = |ranks: usize| selfemo_eval::predictions::read(&selfemo_eval::predictions::path_beside(&out(ranks), "meld")).unwrap();
            let (p, q) = (predictions(1), predictions(2));
            assert_eq!(p.len(), 7);
            for (x, y) in p.iter().zip(&q) {
                assert_eq!((&x.text, x.turn), (&y.text, y.turn), "{command:?}: the same targets, golds, predictions and completions");
                let (lx, ly) = (x.label_logprobs.clone().unwrap_or_default(), y.label_logprobs.clone().unwrap_or_default());
                assert!(lx.len() == ly.len() && lx.iter().zip(&ly).all(|(a, b)| (a - b).abs() < 1e-4), "{command:?}: {lx:?} vs {ly:?}");
            }
        }
    }
}

/// The process id of rank `rank` of the mpirun job training `config`.
fn rank_pid(rank: usize, config: &Path) -> Option<u32> {
    let wanted = format!("OMPI_COMM_WORLD_RANK={rank}");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let environ = std::fs::read(e.path().join("environ")).ok()?;
        let ours = String::from_utf8_lossy(&cmdline).contains(config.to_str()?);
        let is_rank = environ.split(|b| *b == 0).any(|v| v == wanted.as_bytes());
        (ours && is_rank && !String::from_utf8_lossy(&cmdline).starts_with("mpirun")).then_some(pid)
    })
}
