//! `selfemo export` from the outside: a trained run's model as an HF folder and GGUF files
//! that load back with its logits, that transformers and llama.cpp read as selfemo does (the
//! real-client checks, run where `SELFEMO_CLIENT_PYTHON` names the venv scripts/client-venv
//! makes, always under CI), and bad input that leaves nothing behind.

#[path = "../../trainer/tests/common/mod.rs"]
mod common;

use burn::tensor::{Device, Int, Tensor, TensorData};
use selfemo_model::{LoadOptions, LoadedModel, Message, ModelSource, SamplingConfig, generate};
use std::path::{Path, PathBuf};
use std::process::Command;

fn selfemo(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_selfemo")).args(args).env("RUST_BACKTRACE", "0").output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn export(source: &Path, format: &str, dtype: &str, out: &Path) {
    let (ok, err) = selfemo(&["export", source.to_str().unwrap(), "--format", format, "--dtype", dtype, "--out", out.to_str().unwrap()]);
    assert!(ok, "{err}");
}

fn load(source: ModelSource) -> LoadedModel {
    LoadedModel::load(&source, LoadOptions::default(), &Device::flex()).unwrap()
}

fn last_logits(m: &LoadedModel, ids: &[u32]) -> Vec<f32> {
    let t = Tensor::<2, Int>::from_data(TensorData::new(ids.iter().map(|x| *x as i64).collect(), [1, ids.len()]), &Device::flex());
    let all: Vec<f32> = m.model.forward_logits(t).into_data().try_to_vec().unwrap();
    all[all.len() - m.config.vocab_size..].to_vec()
}

fn gap(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn conversations() -> Vec<Vec<Message>> {
    vec![
        vec![Message::new("user", "What is the capital of France?")],
        vec![Message::new("system", "Name the speaker's emotion."), Message::new("user", "Ross: We were on a break!")],
        vec![Message::new("user", "Hi"), Message::new("assistant", "Hello! How can I help?"), Message::new("user", "Tell me a joke.")],
    ]
}

/// The venv python with transformers and llama-cpp-python, or `None` (printed) outside CI.
fn client_python() -> Option<PathBuf> {
    match std::env::var_os("SELFEMO_CLIENT_PYTHON") {
        Some(p) => Some(PathBuf::from(p)),
        None if std::env::var("CI").as_deref() == Ok("true") => panic!("CI runs the real-client checks: scripts/test sets SELFEMO_CLIENT_PYTHON"),
        None => {
            eprintln!("skipping the real-client checks: SELFEMO_CLIENT_PYTHON is not set (scripts/client-venv makes the venv)");
            None
        }
    }
}

/// What scripts/clients/check_export.py answers to `request`.
fn ask_clients(python: &Path, request: serde_json::Value) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("request.json");
    std::fs::write(&file, request.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/clients/check_export.py");
    let out = Command::new(python).arg(script).arg(&file).output().unwrap();
    assert!(out.status.success(), "check_export.py failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// transformers applies the exported chat template to exactly selfemo's ids, with eos/pad set;
/// llama.cpp's greedy 16 tokens after each prompt equal selfemo's on `source`.
fn check_real_clients(python: &Path, source: &LoadedModel, hf_dir: &Path, gguf: &Path) {
    let tok = &source.tokenizer;
    let ids: Vec<Vec<u32>> = conversations().iter().map(|c| tok.encode(&tok.chat_prompt(c))).collect();
    let chats: Vec<Vec<serde_json::Value>> =
        conversations().iter().map(|c| c.iter().map(|m| serde_json::json!({"role": m.role, "content": m.content})).collect()).collect();
    let answer =
        ask_clients(python, serde_json::json!({"hf_dir": hf_dir, "conversations": chats, "gguf": gguf, "prompts": ids, "n_tokens": 16, "eos": tok.eos_ids}));
    assert_eq!(answer["chat_ids"], serde_json::json!(ids), "transformers' apply_chat_template");
    assert_eq!((answer["eos_token"].as_str(), answer["pad_token_id"].as_u64()), (tok.special.eos.as_deref(), Some(u64::from(tok.pad_id))));
    let seeds: Vec<u64> = (0..ids.len() as u64).collect();
    let ours: Vec<Vec<u32>> =
        generate(&source.model, &ids, &SamplingConfig::greedy(16), &seeds, &tok.eos_ids, tok.pad_id, None).into_iter().map(|g| g.tokens).collect();
    assert_eq!(answer["greedy"], serde_json::json!(ours), "llama.cpp's greedy continuations of {}", gguf.display());
}

#[test]
fn a_trained_run_exports_as_folders_and_files_that_load_back_and_that_real_clients_read() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut c) = common::config(dir.path(), "exported") else { return };
    (c.grpo.max_steps, c.grpo.save_steps, c.warm_start.steps) = (2, 2, 3);
    let run = selfemo_trainer::run::train(&c, Default::default()).unwrap().run_dir;
    let out = dir.path().join("out");
    let (hf_dir, gguf) = (out.join("hf"), out.join("run.gguf"));
    export(&run, "hf", "f32", &hf_dir);
    export(&run, "gguf", "f32", &gguf);

    // Round trips: the run's best/ = the HF export exactly, = the GGUF within 1e-5.
    let source = load(ModelSource::HfDir(run.join("best")));
    let base = LoadedModel::load(&ModelSource::Default, LoadOptions { max_layers: Some(2), ..Default::default() }, &Device::flex()).unwrap();
    let ids = source.tokenizer.encode(&source.tokenizer.chat_prompt(&conversations()[1]));
    let want = last_logits(&source, &ids);
    assert!(gap(&want, &last_logits(&base, &ids)) > 1e-3, "the warm start changed the model");
    assert_eq!(last_logits(&load(ModelSource::HfDir(hf_dir.clone())), &ids), want);
    let from_gguf = load(ModelSource::Gguf(gguf.clone()));
    assert!(gap(&last_logits(&from_gguf, &ids), &want) < 1e-5);
    assert_eq!(from_gguf.tokenizer.encode(&from_gguf.tokenizer.chat_prompt(&conversations()[1])), ids, "the GGUF prompts the model as the run did");

    // The model card: base model, licence, dataset, the run's test scores and config.
    let card = std::fs::read_to_string(hf_dir.join("README.md")).unwrap();
    for needle in ["license: apache-2.0", "base_model: HuggingFaceTB/SmolLM2-135M-Instruct", "dataset meld", "| score | 2 |", "max_layers = 2"] {
        assert!(card.contains(needle), "{needle:?} in\n{card}");
    }

    if let Some(python) = client_python() {
        check_real_clients(&python, &source, &hf_dir, &gguf);
    }

    // A trainer checkpoint exports the model it holds: the last one is the run's final model.
    let from_checkpoint = out.join("step-2");
    export(&run.join("checkpoints/step-2"), "hf", "f32", &from_checkpoint);
    assert_eq!(last_logits(&load(ModelSource::HfDir(from_checkpoint)), &ids), last_logits(&load(ModelSource::HfDir(run.join("final"))), &ids));

    // A run folder from before exports carried tokenizer_config.json gets its base model's template.
    std::fs::remove_file(run.join("best/tokenizer_config.json")).unwrap();
    let legacy = out.join("legacy");
    export(&run, "hf", "f32", &legacy);
    let template = std::fs::read_to_string(legacy.join("tokenizer_config.json")).unwrap();
    assert!(template.contains("You are a helpful AI assistant named SmolLM"), "{template}");
}

#[test]
fn real_clients_read_the_default_models_exports_and_its_q8_0_gguf() {
    if selfemo_model::fetch::default_model_for_tests().is_none() {
        return;
    }
    let Some(python) = client_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (hf_dir, f32_file, q8_file) = (dir.path().join("hf"), dir.path().join("m.gguf"), dir.path().join("m-q8_0.gguf"));
    export(Path::new("default"), "hf", "f32", &hf_dir);
    export(Path::new("default"), "gguf", "f32", &f32_file);
    export(Path::new("default"), "gguf", "q8_0", &q8_file);
    let source = load(ModelSource::Default);
    check_real_clients(&python, &source, &hf_dir, &f32_file);

    // q8_0 in llama.cpp (8-bit weights and activations) after the France prompt: the same top
    // three candidates as selfemo's f32, logits within 4% (measured: 0.68 of 25.3 with
    // llama.cpp built for an AVX2 Zen 3, under 0.5 on another machine; a misread tensor is off
    // by tens and changes the candidates).
    let tok = &source.tokenizer;
    let france = tok.encode(&tok.chat_prompt(&conversations()[0]));
    let answer = ask_clients(&python, serde_json::json!({"gguf": q8_file, "prompts": [france], "n_tokens": 1, "eos": tok.eos_ids}));
    let want = last_logits(&source, &france);
    let top: Vec<(u64, f64)> = answer["top5"][0].as_array().unwrap().iter().map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap())).collect();
    let mut ours: Vec<usize> = (0..want.len()).collect();
    ours.sort_by(|a, b| want[*b].total_cmp(&want[*a]));
    let set = |ids: &[u64]| ids.iter().copied().collect::<std::collections::BTreeSet<u64>>();
    assert_eq!(set(&top[..3].iter().map(|p| p.0).collect::<Vec<_>>()), set(&ours[..3].iter().map(|i| *i as u64).collect::<Vec<_>>()), "{top:?}");
    for (id, logit) in &top[..3] {
        let f32_logit = f64::from(want[*id as usize]);
        assert!((logit - f32_logit).abs() < 0.04 * f32_logit.abs().max(10.0), "token {id}: llama.cpp q8_0 {logit}, selfemo f32 {f32_logit}");
    }
}

#[test]
fn bad_exports_say_what_is_wrong_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = dir.path().join("run");
    std::fs::create_dir_all(run.join("best")).unwrap();
    std::fs::write(run.join("config.toml"), "name = \"half\"\n").unwrap();
    let stray = dir.path().join("stray-checkpoint");
    std::fs::create_dir_all(&stray).unwrap();
    std::fs::write(stray.join("model.bpk"), "").unwrap();
    let cases: [(Vec<&str>, &str); 7] = [
        (vec!["export", stray.to_str().unwrap(), "--format", "hf"], "a checkpoint is read in its run folder"),
        (vec!["export", "no-such-run", "--format", "hf"], "no-such-run"),
        (vec!["export", run.to_str().unwrap(), "--format", "hf"], "no best/config.json"),
        (vec!["export", run.to_str().unwrap(), "--format", "gguf", "--checkpoint", "final"], "no final/config.json"),
        (vec!["export", "default", "--format", "hf", "--dtype", "f8"], "unknown dtype \"f8\""),
        (vec!["export", "default", "--format", "hf", "--dtype", "q8_0"], "q8_0 is a GGUF type"),
        (vec!["export", dir.path().to_str().unwrap(), "--format", "hf"], "neither a run folder"),
    ];
    for (args, needle) in cases {
        let (ok, err) = selfemo(&[args.as_slice(), &["--out", out.to_str().unwrap()]].concat());
        assert!(!ok && err.contains(needle), "{args:?}: {needle:?} in {err}");
        assert!(!out.exists(), "{args:?} wrote {}", out.display());
    }
    // A half-written best/ (weights cut short) is an error naming the file.
    std::fs::write(run.join("config.toml"), std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/quickstart.toml")).unwrap())
        .unwrap();
    for (f, text) in [("config.json", "{}"), ("tokenizer.json", "{}")] {
        std::fs::write(run.join("best").join(f), text).unwrap();
    }
    let (ok, err) = selfemo(&["export", run.to_str().unwrap(), "--format", "hf", "--out", out.to_str().unwrap()]);
    assert!(!ok && err.contains("config.json"), "{err}");
    // An existing --out is kept unless --force.
    std::fs::create_dir_all(&out).unwrap();
    let (ok, err) = selfemo(&["export", "default", "--format", "gguf", "--out", out.to_str().unwrap()]);
    assert!(!ok && err.contains("exists (pass --force"), "{err}");
    let left: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.contains(".tmp-")).collect();
    assert!(left.is_empty(), "temporary exports left behind: {left:?}");
}
