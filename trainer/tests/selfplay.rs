//! The SELF-EMO pipeline end to end on the real default model (2 layers, tiny budget): both
//! roles roll out, the flywheel file of each iteration holds rows that satisfy the keep-rules,
//! iteration 2 trains on everything iteration 1 kept (recognition rows by SFT, synthetic turns
//! as prompts), the KL reference is the warm-started policy, steered samples are importance
//! weighted, and the same seed gives the same files; and the rationale warm start reports why
//! it rejected each rationale.

use selfemo_datasets::Target;
use selfemo_selfplay::{EmotionDraw, ExpressionItem, Kind, store};
use selfemo_trainer::config::{RunConfig, WarmStartKind};
use selfemo_trainer::evaluation::read_dev_curve;
use selfemo_trainer::run::{TrainOptions, train};
use selfemo_trainer::run_dir::{DevMetric, plot_dev_comparison};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn config(dir: &Path, name: &str) -> Option<RunConfig> {
    let model = selfemo_model::fetch::default_model_for_tests()?;
    // Emotion vectors of the same 2-layer policy, for steered responder sampling.
    let vectors = dir.join("vectors.safetensors");
    if !vectors.is_file() {
        let options = selfemo_model::LoadOptions { max_layers: Some(2), ..Default::default() };
        let m = selfemo_model::LoadedModel::load(&selfemo_model::ModelSource::Gguf(model), options, &burn::tensor::Device::flex()).unwrap();
        let queries = &selfemo_model::steering::QUERIES[..4];
        let emotions = ["joy", "anger", "sadness", "surprise", "fear", "disgust"];
        selfemo_model::EmotionVectors::extract(&m.model, &m.tokenizer, "2 layers", &emotions, queries).save(&vectors).unwrap();
    }
    // A label warm start teaches the 2-layer policy to close the contract with a label, so
    // iteration 1 keeps recognition rows (the prior's label is often right on MELD) and the
    // re-recogniser agrees with some e*; the defaults then replay them in iteration 2.
    let text = format!(
        "name = \"{name}\"\noutput_dir = \"{}\"\nseed = 5\n[model]\nmax_layers = 2\ntrainable = {{ kind = \"top_layers\", layers = 1 }}\n\
         [data]\ncontext_window = 1\nmax_prompt_tokens = 120\n\
         [grpo]\nnum_generations = 3\nprompts_per_step = 3\nmax_steps = 4\nmax_completion_length = 4\nlearning_rate = 1e-3\nsave_steps = 4\nbeta = 0.04\n\
         [prompt]\nreply_prefix = \"<think>x</think><answer>\"\n\
         [rewards.weights]\nexplanation = 0.5\n\
         [eval]\ndev_limit = 2\nmax_new_tokens = 4\ntest_limit = 2\n\
         [selfplay]\niterations = 2\nresponder_prompts_per_step = 2\nsynthetic_share = 0.5\n\
         [selfplay.steering]\nvectors = \"{}\"\nalphas = [0.0, 4.0]\n\
         [warm_start]\nsteps = 6\nbatch_size = 4\nlearning_rate = 3e-3\n",
        dir.display(),
        vectors.display()
    );
    let c: RunConfig = toml::from_str(&text).unwrap();
    c.validate().unwrap();
    Some(c)
}

#[test]
fn pipeline_trains_on_what_the_flywheel_kept() {
    let dir = tempfile::tempdir().unwrap();
    let Some(c) = config(dir.path(), "sp") else { return };
    let out = train(&c, TrainOptions::default()).unwrap();
    let corpus = selfemo_datasets::load(c.data.dataset, None).unwrap();
    let labels = corpus.dataset.labels();
    // e* of each source utterance, rebuilt from the corpus
    let draw = EmotionDraw::new(c.selfplay.target_emotion, &corpus);
    let e_star: BTreeMap<String, String> = (0..corpus.dialogues.len())
        .flat_map(|d| (0..corpus.dialogues[d].utterances.len()).map(move |t| Target { dialogue: d, turn: t }))
        .filter_map(|t| ExpressionItem::from_target(&corpus, t, 1, 0, c.seed, &draw))
        .map(|i| (i.source, i.emotion.name().to_string()))
        .collect();

    let mut all = Vec::new();
    for k in 1..=2u32 {
        let rows = store::read(&out.run_dir.join(format!("iter-{k}/flywheel.parquet"))).unwrap();
        assert!(rows.iter().all(|r| r.iteration == k));
        let steps = selfemo_trainer::run::iteration_steps(4, 2, k);
        assert!(rows.iter().all(|r| (steps.0..=steps.1).contains(&r.step)), "rows come from the iteration's own steps");
        all.extend(rows);
    }
    let kept = |kind: Kind, k: u32| all.iter().filter(|r| r.kind == kind && r.iteration == k).collect::<Vec<_>>();
    let (recognition_1, synthetic_1) = (kept(Kind::Recognition, 1), kept(Kind::Synthetic, 1));
    assert!(!recognition_1.is_empty() && !synthetic_1.is_empty(), "iteration 1 keeps rows of both kinds: {} + {}", recognition_1.len(), synthetic_1.len());
    let tau_e = c.selfplay.flywheel.tau_e;
    for r in all.iter().filter(|r| r.kind == Kind::Synthetic) {
        assert!(!r.turn.is_empty());
        assert_eq!(r.label, e_star[&r.source], "a synthetic turn is labelled with its e*");
        assert_eq!(r.prediction, r.label, "kept at tau_e = {tau_e}: the re-recogniser heard e*");
        assert_eq!(r.reward_expression, Some(1.0));
        assert!(
            labels.mention_in(&r.turn).is_none_or(|m| matches!(m, selfemo_datasets::Mention::Synonym(_))),
            "a turn naming a label is never kept: {:?}",
            r.turn
        );
        assert!(r.reward_recognition.is_none() && r.context.len() <= 2);
    }
    for r in all.iter().filter(|r| r.kind == Kind::Recognition) {
        assert_eq!(r.reward_format, 1.0);
        assert!(r.reward_recognition.unwrap() >= 1.0);
        assert_eq!(labels.parse(&r.prediction).map(|e| e.name().to_string()), Some(r.label.clone()));
    }
    // dedup and cap
    let keys: BTreeSet<_> = all.iter().map(|r| (r.kind, r.source.clone(), r.turn.to_lowercase(), r.completion.to_lowercase())).collect();
    assert_eq!(keys.len(), all.len(), "no repeated rows");
    let mut per_source: BTreeMap<(Kind, &str), usize> = BTreeMap::new();
    all.iter().for_each(|r| *per_source.entry((r.kind, &r.source)).or_default() += 1);
    assert!(per_source.values().all(|n| *n <= 2), "cap of 2 per source: {per_source:?}");

    // Iteration 2 trains on what iteration 1 kept: its recognition rows by SFT (every one of
    // them in iteration 2's replayed batches), its synthetic turns as GRPO prompts.
    let replayed: Vec<serde_json::Value> =
        std::fs::read_to_string(out.run_dir.join("iter-2/replay.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for row in &recognition_1 {
        let completion = row.completion.strip_prefix(&c.prompt.reply_prefix).unwrap();
        let trained = replayed.iter().any(|r| r["source"] == row.source.as_str() && r["label"] == row.label.as_str() && r["completion"] == completion);
        assert!(trained, "kept in iteration 1, not replayed in iteration 2: {} {completion:?}", row.source);
    }
    assert_eq!(replayed.len(), recognition_1.len().div_ceil(8) * 8, "one pass, batches of 8, the last one filled by cycling");
    assert!(!out.run_dir.join("iter-1/replay.jsonl").exists(), "iteration 1 has nothing to replay");
    let used: f64 = out.rows.iter().filter(|r| r.values["selfplay/iteration"] == 2.0).map(|r| r.values["selfplay/synthetic_prompts"]).sum();
    assert!(used > 0.0, "iteration 2 trained on iteration 1's synthetic turns");
    // round(0.5 × 3) = 2 synthetic prompts per step over iteration 2's 2 steps, each turn once:
    // a turn cycled through every step would flood the iteration with a few (mostly neutral) turns.
    assert_eq!(used as usize, synthetic_1.len().min(2 * 2), "each of iteration 1's {} kept synthetic turns is a prompt once", synthetic_1.len());
    assert!(out.rows.iter().filter(|r| r.values["selfplay/iteration"] == 1.0).all(|r| r.values["selfplay/synthetic_prompts"] == 0.0));
    for key in [
        "rewards/expression/mean",
        "rewards/recognition/mean",
        "rewards/explanation/mean",
        "responder/names_emotion",
        "reward/recogniser",
        "reward/responder",
        "flywheel/kept_synthetic",
        "timing/respond",
    ] {
        assert!(out.rows.iter().all(|r| r.values.contains_key(key)), "{key}");
    }
    // Steered samples (alpha 4 on every other responder sample) are weighed by min(π_old/π_steer, 1).
    // (A step whose responder targets are all neutral, which has no vector, samples unsteered.)
    let weights: Vec<f64> = out.rows.iter().filter_map(|r| r.values.get("steering/is_weight/mean").copied()).collect();
    assert!(weights.iter().all(|w| *w > 0.0 && *w <= 1.0), "truncated at C = 1: {weights:?}");
    assert!(weights.iter().any(|w| *w < 1.0), "the steered policy drew these tokens, so some weights are below 1: {weights:?}");
    // The first GRPO step's policy is the KL reference: KL 0; the warm start moved it away from the loaded model.
    assert!(out.rows[0].values["kl"].abs() < 1e-9, "KL at the first step: {}", out.rows[0].values["kl"]);
    assert!(out.rows[1].values["kl"] > 0.0);
    // Per-iteration summaries, plots, the best-dev test evaluation and the export.
    assert_eq!(out.iterations.len(), 2);
    assert_eq!(out.iterations.iter().map(|s| s.kept.kept_synthetic).sum::<usize>(), all.iter().filter(|r| r.kind == Kind::Synthetic).count());
    assert_eq!(out.iterations[0].flywheel_rows + out.iterations[1].flywheel_rows, all.len());
    for f in ["plots/dev_curve.png", "plots/flywheel.png", "test.json", "best/model.safetensors", "final/model.safetensors", "reference.bpk", "warm_start.json"]
    {
        assert!(out.run_dir.join(f).is_file(), "{f}");
    }
    let test = out.test.expect("a test evaluation");
    for mode in ["score", "generate"] {
        assert_eq!(test.reports[mode].per_class.iter().map(|c| c.support).sum::<usize>(), 2, "{mode}: test_limit targets");
        assert_eq!(selfemo_eval::predictions::read(&out.run_dir.join(format!("test-{mode}.predictions.parquet"))).unwrap().len(), 2);
    }
    // Every dev evaluation is on the curve, with its predictions; best/ holds the best one's model.
    let stages: Vec<&str> = out.curve.iter().map(|e| e.stage.as_str()).collect();
    assert_eq!(stages, ["before", "warm_start-6", "iteration-1", "iteration-2"]);
    assert!(out.curve.windows(2).all(|w| w[0].train_seconds <= w[1].train_seconds) && out.curve[3].train_seconds > 0.0);
    for s in &stages {
        assert!(out.run_dir.join(format!("dev/{s}.predictions.parquet")).is_file(), "{s}");
    }
    assert_ne!(test.stage, "before");

    // Same seed, same config: the same flywheel files and metrics.
    let again = train(&RunConfig { name: "sp-again".into(), ..c }, TrainOptions::default()).unwrap();
    for k in 1..=2 {
        let read = |run: &Path| store::read(&run.join(format!("iter-{k}/flywheel.parquet"))).unwrap();
        assert_eq!(read(&out.run_dir), read(&again.run_dir), "iteration {k}");
    }
    let exact = |r: &selfemo_trainer::metrics_log::Row| -> Vec<(String, u64)> {
        r.values
            .iter()
            .filter(|(k, _)| !k.starts_with("timing/") && *k != "tokens_per_second" && *k != "entropy")
            .map(|(k, v)| (k.clone(), v.to_bits()))
            .collect()
    };
    assert_eq!(out.rows.iter().map(exact).collect::<Vec<_>>(), again.rows.iter().map(exact).collect::<Vec<_>>());

    // The dev curve reads back as recorded, and two runs' curves chart together.
    // (serde_json parses a float to within an ulp of the one it wrote.)
    let back = read_dev_curve(&out.run_dir).unwrap();
    assert_eq!(back.iter().map(|e| (&e.stage, e.step)).collect::<Vec<_>>(), out.curve.iter().map(|e| (&e.stage, e.step)).collect::<Vec<_>>());
    for (read, kept) in back.iter().zip(&out.curve) {
        assert!((read.train_seconds - kept.train_seconds).abs() <= 1e-12 * kept.train_seconds.max(1.0), "{}", kept.stage);
        assert!((read.dev.report.weighted_f1 - kept.dev.report.weighted_f1).abs() <= 1e-12, "{}", kept.stage);
    }
    let chart = dir.path().join("dev-wf1.png");
    let runs = [("sp".to_string(), out.curve.clone()), ("sp-again".to_string(), read_dev_curve(&again.run_dir).unwrap())];
    plot_dev_comparison(&chart, DevMetric::WeightedF1, &runs).unwrap();
    assert!(std::fs::metadata(&chart).unwrap().len() > 1000, "a PNG was written");
    let missing = read_dev_curve(dir.path()).unwrap_err().to_string();
    assert!(missing.contains("dev_curve.jsonl"), "{missing}");
}

#[test]
fn the_rationale_warm_start_lists_every_rationale_with_its_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut c) = config(dir.path(), "rationale") else { return };
    c.prompt.reply_prefix = "<think>".into();
    (c.warm_start.kind, c.warm_start.steps, c.warm_start.batch_size) = (WarmStartKind::Rationale, 2, 4);
    (c.grpo.max_steps, c.selfplay.iterations, c.selfplay.steering, c.grpo.max_completion_length) = (1, 1, None, 8);
    c.validate().unwrap();
    let out = train(&c, TrainOptions { stop_after: Some(1), ..Default::default() }).unwrap();
    let listed = std::fs::read_to_string(out.run_dir.join("warm_start_rationales.jsonl")).unwrap();
    let listed: Vec<serde_json::Value> = listed.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(listed.len(), 8, "steps x batch size rationales written");
    let labels = selfemo_datasets::Dataset::Meld.labels();
    for r in &listed {
        let text = r["rationale"].as_str().unwrap();
        let verdict = match () {
            _ if text.is_empty() => "empty",
            _ if labels.mention_in(text).is_some() => "names_emotion",
            _ if r["repredicted"] != r["gold"] => "disagrees",
            _ => "kept",
        };
        assert_eq!(r["verdict"], verdict, "{r}");
        assert_eq!(r["kept"].as_bool().unwrap(), verdict == "kept", "{r}");
    }
    let events = std::fs::read_to_string(out.run_dir.join("events.log")).unwrap();
    assert!(events.contains("naming an emotion"), "the rejections are reported: {events}");
}

#[test]
fn a_recogniser_only_run_finishes_and_resumes_without_responder_means() {
    // Plain GRPO (no responder) writes iteration summaries with no responder reward; the end of
    // the run and a resumed run read them back (a resumed run at its last step goes straight to
    // the test evaluation).
    let dir = tempfile::tempdir().unwrap();
    let Some(mut c) = config(dir.path(), "recogniser-only") else { return };
    (c.selfplay.responder_prompts_per_step, c.selfplay.steering, c.grpo.max_steps, c.grpo.save_steps, c.warm_start.steps) = (0, None, 2, 2, 2);
    c.validate().unwrap();
    let out = train(&c, TrainOptions::default()).unwrap();
    assert!(out.iterations.iter().all(|s| s.reward_responder.is_none() && s.expression.is_none() && s.reward_recogniser.is_some()));
    let resumed = train(&c, TrainOptions { resume: true, ..Default::default() }).unwrap();
    assert_eq!(resumed.iterations, out.iterations);
    assert_eq!(resumed.test.map(|t| t.stage), out.test.map(|t| t.stage));
}
