//! The SELF-EMO pipeline end to end on the real default model (2 layers, tiny budget): both
//! roles roll out, the flywheel file of each iteration holds rows that satisfy the keep-rules,
//! iteration 2 trains on iteration 1's synthetic turns, and the same seed gives the same files
//! (with the responder's samples steered at alternating α and the rationale warm start on).

use selfemo_datasets::{Split, Target};
use selfemo_selfplay::{ExpressionItem, Kind, store};
use selfemo_trainer::config::RunConfig;
use selfemo_trainer::run::{TrainOptions, train};
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
    let text = format!(
        "name = \"{name}\"\noutput_dir = \"{}\"\nseed = 5\n[model]\nmax_layers = 2\ntrainable = {{ kind = \"top_layers\", layers = 1 }}\n\
         [data]\ncontext_window = 1\nmax_prompt_tokens = 120\n\
         [grpo]\nnum_generations = 3\nprompts_per_step = 2\nmax_steps = 4\nmax_completion_length = 8\nlearning_rate = 1e-3\nsave_steps = 4\ntemperature = 1.5\n\
         [eval]\ndev_limit = 2\nmax_new_tokens = 4\ntest_limit = 2\n\
         [selfplay]\niterations = 2\nresponder_prompts_per_step = 2\nsynthetic_share = 0.5\nsft_steps = 1\n\
         [selfplay.flywheel]\ntau_u = 1.0\ntau_e = 0.0\nmax_per_source = 2\n\
         [selfplay.steering]\nvectors = \"{}\"\nalphas = [0.0, 4.0]\n\
         [warm_start]\nsteps = 1\nbatch_size = 3\nkind = \"rationale\"\n",
        dir.display(),
        vectors.display()
    );
    let c: RunConfig = toml::from_str(&text).unwrap();
    c.validate().unwrap();
    Some(c)
}

#[test]
fn pipeline_writes_flywheel_rows_that_satisfy_the_keep_rules() {
    let dir = tempfile::tempdir().unwrap();
    let Some(c) = config(dir.path(), "sp") else { return };
    let out = train(&c, TrainOptions::default()).unwrap();
    let corpus = selfemo_datasets::load(c.data.dataset, None).unwrap();
    let labels = corpus.dataset.labels();
    // e* of each source utterance, rebuilt from the corpus
    let e_star: BTreeMap<String, String> = corpus
        .targets(Split::Train)
        .into_iter()
        .chain((0..corpus.dialogues.len()).flat_map(|d| (0..corpus.dialogues[d].utterances.len()).map(move |t| Target { dialogue: d, turn: t })))
        .filter_map(|t| ExpressionItem::from_target(&corpus, t, 1, 0, c.seed))
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
    let synthetic: Vec<_> = all.iter().filter(|r| r.kind == Kind::Synthetic).collect();
    assert!(!synthetic.is_empty(), "tau_e = 0 keeps every non-empty responder turn once");
    for r in &synthetic {
        assert!(!r.turn.is_empty());
        assert_eq!(r.label, e_star[&r.source], "a synthetic turn is labelled with its e*");
        let q = labels.parse(&r.prediction).expect("the re-recognition is a label");
        let r_e = r.reward_expression.unwrap();
        assert_eq!(r_e, if q.name() == r.label { 1.0 } else { 1.0 / 3.0 }, "R_E = IoU_s(Q, {{e*}}) with lambda = 1");
        assert!(r.reward_recognition.is_none() && r.context.len() <= 2);
    }
    for r in all.iter().filter(|r| r.kind == Kind::Recognition) {
        assert_eq!(r.reward_format, 1.0);
        assert!(r.reward_recognition.unwrap() >= 1.0);
    }
    // dedup and cap
    let keys: BTreeSet<_> = all.iter().map(|r| (r.kind, r.source.clone(), r.turn.to_lowercase(), r.completion.to_lowercase())).collect();
    assert_eq!(keys.len(), all.len(), "no repeated rows");
    let mut per_source: BTreeMap<(Kind, &str), usize> = BTreeMap::new();
    all.iter().for_each(|r| *per_source.entry((r.kind, &r.source)).or_default() += 1);
    assert!(per_source.values().all(|n| *n <= 2), "cap of 2 per source: {per_source:?}");

    // Iteration 2 trained on iteration 1's synthetic turns; every step logged its role metrics.
    let iteration_1_synthetic = synthetic.iter().filter(|r| r.iteration == 1).count();
    let used: f64 = out.rows.iter().filter(|r| r.values["selfplay/iteration"] == 2.0).map(|r| r.values["selfplay/synthetic_prompts"]).sum();
    assert_eq!(used > 0.0, iteration_1_synthetic > 0);
    assert!(out.rows.iter().filter(|r| r.values["selfplay/iteration"] == 1.0).all(|r| r.values["selfplay/synthetic_prompts"] == 0.0));
    for key in ["rewards/expression/mean", "rewards/recognition/mean", "reward/recogniser", "reward/responder", "flywheel/kept_synthetic", "timing/respond"] {
        assert!(out.rows.iter().all(|r| r.values.contains_key(key)), "{key}");
    }
    // Per-iteration summaries, plots, the best-dev test evaluation and the export.
    assert_eq!(out.iterations.len(), 2);
    assert_eq!(out.iterations.iter().map(|s| s.kept.kept_synthetic).sum::<usize>(), synthetic.len());
    assert_eq!(out.iterations[0].flywheel_rows + out.iterations[1].flywheel_rows, all.len());
    for f in ["plots/iterations.png", "plots/flywheel.png", "test.json", "best/model.safetensors", "final/model.safetensors"] {
        assert!(out.run_dir.join(f).is_file(), "{f}");
    }
    let test = out.test.expect("a test evaluation");
    assert_eq!(test.report.per_class.iter().map(|c| c.support).sum::<usize>(), 2, "test_limit targets");

    // The rationale warm start: every self-written rationale listed, kept exactly when its
    // label-free re-prediction is the gold label.
    let listed = std::fs::read_to_string(out.run_dir.join("warm_start_rationales.jsonl")).unwrap();
    let listed: Vec<serde_json::Value> = listed.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(listed.len(), 3);
    for r in &listed {
        let agrees = r["repredicted"] == r["gold"] && r["rationale"] != "";
        assert_eq!(r["kept"].as_bool().unwrap(), agrees, "{r}");
    }

    // Same seed, same config: the same flywheel files and metrics.
    let again = train(&RunConfig { name: "sp-again".into(), ..c }, TrainOptions::default()).unwrap();
    for k in 1..=2 {
        let read = |run: &Path| store::read(&run.join(format!("iter-{k}/flywheel.parquet"))).unwrap();
        assert_eq!(read(&out.run_dir), read(&again.run_dir), "iteration {k}");
    }
    let exact = |r: &selfemo_trainer::metrics_log::Row| -> Vec<(String, u64)> {
        r.values.iter().filter(|(k, _)| !k.starts_with("timing/") && *k != "tokens_per_second" && *k != "entropy").map(|(k, v)| (k.clone(), v.to_bits())).collect()
    };
    assert_eq!(out.rows.iter().map(exact).collect::<Vec<_>>(), again.rows.iter().map(exact).collect::<Vec<_>>());
}
