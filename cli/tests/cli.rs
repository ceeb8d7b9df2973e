//! The `selfemo` binary from the outside: what a user types and sees.

use std::process::Command;

fn selfemo(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_selfemo")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Runs a command that must succeed and write a JSON report to `--out report`: its stdout and
/// the report.
fn selfemo_report(args: &[&str], report: &std::path::Path) -> (String, serde_json::Value) {
    let (ok, stdout, err) = selfemo(&[args, &["--out", report.to_str().unwrap()]].concat());
    assert!(ok, "{err}");
    (stdout, serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap())
}

#[test]
fn data_stats_prints_split_and_label_counts() {
    let (ok, out, _) = selfemo(&["data", "stats", "--dataset", "meld"]);
    assert!(ok);
    let line = |name: &str| out.lines().find(|l| l.trim_start().starts_with(name)).unwrap().split_whitespace().skip(1).collect::<Vec<_>>().join(" ");
    assert_eq!(line("dialogues"), "1038 114 280");
    assert_eq!(line("utterances"), "9989 1109 2610");
    assert_eq!(line("neutral"), "4710 470 1256");
    let (ok, _, err) = selfemo(&["data", "stats", "--dataset", "iemocap"]);
    assert!(!ok && err.contains("pass --path"), "{err}");
}

#[test]
fn plot_dev_curves_names_the_run_folder_without_a_curve() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dev.png");
    let (ok, _, err) = selfemo(&["plot", "dev-curves", dir.path().to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(!ok && err.contains(&dir.path().join("dev_curve.jsonl").display().to_string()), "{err}");
    assert!(!out.exists());
    let (ok, _, err) = selfemo(&["plot", "dev-curves", dir.path().to_str().unwrap(), "--out", out.to_str().unwrap(), "--metric", "f1"]);
    assert!(!ok && err.contains("unknown metric \"f1\" (accuracy, weighted-f1, macro-f1)"), "{err}");
}

#[test]
fn data_prepare_writes_the_unified_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("all.parquet");
    let (ok, stdout, err) = selfemo(&["data", "prepare", "--out", out.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(stdout.contains("(26314 utterances)"), "9,989 + 1,109 + 2,610 + 9,934 + 1,344 + 1,328: {stdout}");
    let back = selfemo_datasets::unified::read(&out).unwrap();
    assert_eq!(back.len(), 2);
}

#[test]
fn bad_train_config_names_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "name = \"x\"\n[grpo]\nnum_generatons = 8\n").unwrap();
    let (ok, _, err) = selfemo(&["train", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("bad.toml") && err.contains("unknown field `num_generatons`"), "{err}");
    std::fs::write(&path, "name = \"x\"\n").unwrap();
    let (ok, _, err) = selfemo(&["train", path.to_str().unwrap(), "--set", "seed=1", "--set", "grpo.num_generatons=8"]);
    assert!(!ok);
    assert!(err.contains("bad.toml with --set seed=1 --set grpo.num_generatons=8") && err.contains("unknown field `num_generatons`"), "{err}");
}

#[test]
fn generate_answers_with_the_default_model() {
    if selfemo_model::fetch::default_model_for_tests().is_none() {
        return;
    }
    let (ok, out, err) = selfemo(&["generate", "--prompt", "What is the capital of France?", "--max-new-tokens", "12"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "The capital of France is Paris.");
}

#[test]
fn bench_model_reports_every_measurement_against_the_same_run_peak_and_bandwidth() {
    if selfemo_model::fetch::default_model_for_tests().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "bench",
        "model",
        "--layers",
        "1",
        "--prompt-len",
        "40",
        "--decode-tokens",
        "2",
        "--train-batch",
        "1",
        "--train-prompt",
        "4",
        "--train-completion",
        "2",
        "--repeats",
        "1",
    ];
    let (stdout, report) = selfemo_report(&args, &dir.path().join("bench-model.json"));
    assert!(stdout.contains("of peak") && stdout.contains("memory read bandwidth"), "{stdout}");
    let peak = report["matmul_peak_gflops"].as_f64().unwrap();
    assert!(peak > 0.0 && report["memory_read_gb_per_s"].as_f64().unwrap() > 0.0, "{report}");
    let rows = report["rows"].as_array().unwrap();
    let what: Vec<&str> = rows.iter().map(|r| r["what"].as_str().unwrap()).collect();
    let expected = ["prefill b1 x 40", "decode b1", "decode b8", "head b8, few-rows kernel", "head b8, gemm", "fwd+bwd b1 x 6 (2 scored)"];
    assert_eq!(what, expected);
    for r in rows {
        let share = r["fraction_of_peak"].as_f64().unwrap();
        assert!(r["tokens_per_s"].as_f64().unwrap() > 0.0, "{r}");
        assert!(share > 0.0 && share < 1.2, "no phase runs far above the matmul peak of the same run: {r}");
        let decoding = r["what"].as_str().unwrap().starts_with("decode");
        assert_eq!(r["weights_gb_per_s"].as_f64().is_some_and(|g| g > 0.0), decoding, "{r}");
    }
    let rate = |what: &str| rows.iter().find(|r| r["what"] == what).unwrap()["tokens_per_s"].as_f64().unwrap();
    assert!(rate("decode b8") > rate("decode b1"), "a batch of 8 decodes more tokens per second than one row");
}

#[test]
fn bench_train_reports_every_phase_and_the_update_share_of_peak_in_both_layouts() {
    if selfemo_model::fetch::default_model_for_tests().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench-train.json");
    let run = |sharing: &str| {
        let args = [
            "bench",
            "train",
            "--layers",
            "1",
            "--prompts",
            "1",
            "--num-generations",
            "2",
            "--max-completion-length",
            "4",
            "--steps",
            "1",
            "--prefix-sharing",
            sharing,
        ];
        selfemo_report(&args, &out)
    };
    let ((stdout, tree), (_, padded)) = (run("on"), run("off"));
    assert!(stdout.contains("rollout") && stdout.contains("update:"), "{stdout}");
    for report in [&tree, &padded] {
        let seconds = &report["seconds"];
        assert!(["rollout", "update"].iter().all(|k| seconds[*k].as_f64().unwrap() > 0.0), "both phases ran: {report}");
        let share = report["update_fraction_of_peak"].as_f64().unwrap();
        assert!(share > 0.0 && share < 1.5, "{report}");
    }
    let tokens = |r: &serde_json::Value| r["update_tokens"].as_f64().unwrap();
    assert!(tokens(&tree) < tokens(&padded), "a group's prompt runs once on the tree: {} vs {}", tokens(&tree), tokens(&padded));
}

#[test]
fn faithfulness_probe_reports_epc_and_eea() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("run.toml");
    std::fs::write(&bad, "name = \"x\"\n[prompt]\nreply_prefix = \"<answer>\"\n").unwrap();
    let (ok, _, err) = selfemo(&["probe", "faithfulness", "--prompt-from", bad.to_str().unwrap()]);
    assert!(!ok && err.contains("must end with <think>"), "{err}");
    if selfemo_model::fetch::default_model_for_tests().is_none() {
        return;
    }
    let out = dir.path().join("faith.json");
    let (stdout, report) = selfemo_report(&["probe", "faithfulness", "--dataset", "meld", "--limit", "2", "--max-new-tokens", "12"], &out);
    assert!(stdout.contains("EPC") && stdout.contains("EEA"), "{stdout}");
    let meld = &report["meld"];
    assert_eq!(meld["targets"], 2);
    let (rationales, predicted) = (meld["rationales"].as_u64().unwrap(), meld["predicted"].as_u64().unwrap());
    assert!(predicted <= rationales && rationales <= 2);
    assert!((0.0..=1.0).contains(&meld["accuracy"].as_f64().unwrap()), "{meld}");
    for (k, denominator) in [("epc", predicted), ("eea", rationales)] {
        match meld[k].as_f64() {
            Some(v) => assert!(denominator > 0 && (0.0..=1.0).contains(&v), "{k}: {meld}"),
            None => assert!(denominator == 0 && meld[k].is_null(), "{k}: {meld}"),
        }
    }
    // every answer is listed, and the counts are the listed answers'
    let answers = meld["answers"].as_array().unwrap();
    assert_eq!(answers.len(), 2);
    let with_rationale = answers.iter().filter(|a| !a["judged"].is_null()).count();
    assert_eq!(with_rationale as u64, rationales, "{meld}");
}

#[test]
fn eval_reports_both_modes_and_charts_unparseable_answers() {
    if selfemo_model::fetch::default_model_for_tests().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for mode in ["generate", "score"] {
        let out = dir.path().join(format!("{mode}.json"));
        let (stdout, report) = selfemo_report(&["eval", "--mode", mode, "--dataset", "meld", "--limit", "3", "--max-new-tokens", "3"], &out);
        assert!(stdout.contains("meld") && stdout.contains("invalid"), "{stdout}");
        let meld = &report["meld"];
        assert_eq!(meld["targets"], 3);
        let invalid = meld["invalid_rate"].as_f64().unwrap();
        let labelled: u64 = meld["confusion"].as_array().unwrap().iter().flat_map(|r| r.as_array().unwrap()).map(|n| n.as_u64().unwrap()).sum();
        assert_eq!(labelled as f64, (3.0 * (1.0 - invalid)).round(), "the confusion matrix counts the parseable answers: {meld}");
        // 3 greedy tokens cannot close the contract; score mode always picks a label
        assert_eq!(invalid, if mode == "generate" { 1.0 } else { 0.0 });
        let png = std::fs::read(dir.path().join(format!("{mode}-confusion-meld.png"))).unwrap();
        let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
        let classes = meld["per_class"].as_array().unwrap().len() as u32;
        let columns = classes + u32::from(mode == "generate");
        assert_eq!(width, 120 + 80 * columns, "one column per class, plus an invalid column when answers were unparseable");
    }
}

#[test]
fn score_mode_eval_with_prompt_from_scores_the_runs_own_prompts() {
    use burn::tensor::Device;
    use selfemo_datasets::{Dataset, Split};
    use selfemo_model::{LoadOptions, LoadedModel, ModelSource};
    use selfemo_trainer::config::RunConfig;
    let Some(gguf) = selfemo_model::fetch::default_model_for_tests() else { return };
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run.toml");
    // A template unlike the score-mode default, a reply prefix that opens the thought (score
    // mode answers after the re-recogniser's prefix then), and a 2-turn window.
    let toml = r#"
name = "x"
[data]
context_window = 2
max_prompt_tokens = 200
[prompt]
system = "Label the feeling. Labels: {labels}."
user = "Talk:\n{context}\n\nHow does {speaker} feel saying \"{target}\"?"
reply_prefix = "<think>"
"#;
    std::fs::write(&run, toml).unwrap();
    let out = dir.path().join("eval.json");
    let args = ["eval", "--mode", "score", "--prompt-from", run.to_str().unwrap(), "--dataset", "meld", "--split", "dev", "--limit", "3", "--batch", "2"];
    let (_, report) = selfemo_report(&args, &out);
    assert_eq!(report["meld"]["targets"], 3);
    let rows = selfemo_eval::predictions::read(&dir.path().join("eval-meld.predictions.parquet")).unwrap();
    assert_eq!(rows.len(), 3);

    // The same scores from the library, on exactly the run's prompts.
    let config = RunConfig::load(&run).unwrap();
    let m = LoadedModel::load(&ModelSource::Gguf(gguf), LoadOptions::default(), &Device::flex()).unwrap();
    let corpus = selfemo_datasets::load(Dataset::Meld, None).unwrap();
    let targets: Vec<_> = corpus.targets(Split::Dev).into_iter().take(3).collect();
    let template = config.score_template();
    assert_eq!(template.reply_prefix, config.selfplay.rerecognition_prefix);
    let prompts = selfemo_eval::recognition::prompts(&corpus, &targets, &template, 2, 200, &m.tokenizer);
    let text = m.tokenizer.decode(&prompts[2].ids, false);
    assert!(text.contains("Label the feeling.") && text.contains("How does") && text.ends_with(&template.reply_prefix), "{text}");
    let expected = selfemo_eval::recognition::label_scores(&m.model, &m.tokenizer, &prompts, Dataset::Meld.labels(), 8, &mut |_| ());
    for (row, want) in rows.iter().zip(&expected) {
        let got = row.label_logprobs.as_ref().unwrap();
        let gap = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(gap < 1e-4, "scored with the run's prompts: {got:?} vs {want:?}");
        assert_eq!(row.get("prediction"), Dataset::Meld.labels().argmax(want).map(|e| e.name()));
    }
}
