//! Exports read back: HF folders and GGUF files give the source's logits and prompt ids, keep
//! its tokenizer and chat template, and HF folders in transformers' layouts load.

mod common;

use burn::tensor::{Device, Int, Tensor, TensorData};
use common::*;
use selfemo_model::export::hf::{HfOptions, write_folder};
use selfemo_model::export::{ExportDtype, gguf};
use selfemo_model::gguf::Gguf;
use selfemo_model::{LoadOptions, LoadedModel, Message, ModelSource};
use std::path::Path;

fn logits(m: &LoadedModel, ids: &[u32]) -> Vec<f64> {
    let t = Tensor::<2, Int>::from_data(TensorData::new(ids.iter().map(|x| *x as i64).collect(), [1, ids.len()]), &Device::flex());
    m.model.forward_logits(t).into_data().try_to_vec::<f32>().unwrap().into_iter().map(f64::from).collect()
}

fn load(source: ModelSource) -> LoadedModel {
    LoadedModel::load(&source, LoadOptions::default(), &Device::flex()).unwrap()
}

fn chats() -> Vec<Vec<Message>> {
    vec![
        vec![Message::new("user", "What is the capital of France?")],
        vec![Message::new("system", "Name the emotion."), Message::new("user", "Joey: How you doin'?")],
        vec![Message::new("user", "Hi"), Message::new("assistant", "Hello!"), Message::new("user", "I lost my keys again.")],
    ]
}

fn prompt_ids(m: &LoadedModel) -> Vec<Vec<u32>> {
    chats().iter().map(|c| m.tokenizer.encode(&m.tokenizer.chat_prompt(c))).collect()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_default_model_exports_to_hf_and_gguf_with_its_logits_template_and_tokenizer() {
    let Some(path) = default_model() else { return };
    let source = LoadedModel::load(&ModelSource::Gguf(path.clone()), LoadOptions { max_layers: Some(2), ..Default::default() }, &Device::flex()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let (hf_dir, gguf_file) = (out.path().join("hf"), out.path().join("m.gguf"));
    write_folder(&source, &hf_dir, HfOptions::default()).unwrap();
    gguf::write(&source, &gguf_file, ExportDtype::F32, "t", Some("apache-2.0")).unwrap();
    let (hf, gg) = (load(ModelSource::HfDir(hf_dir.clone())), load(ModelSource::Gguf(gguf_file.clone())));

    // The same prompt ids from all three, SmolLM2's default system prompt included.
    let ids = prompt_ids(&source);
    assert_eq!(source.tokenizer.decode(&ids[0][..8], false), "<|im_start|>system\nYou are a helpful AI");
    assert_eq!(prompt_ids(&hf), ids);
    assert_eq!(prompt_ids(&gg), ids);
    for m in [&source, &hf, &gg] {
        assert_eq!((m.tokenizer.eos_ids.clone(), m.tokenizer.pad_id), (vec![2, 0], 2), "<|im_end|> first, then <|endoftext|>");
    }

    // f32 logits: bit-identical through HF, within 1e-5 through GGUF (Q/K rows permuted and back).
    let want = logits(&source, &ids[1]);
    assert_eq!(logits(&hf, &ids[1]), want);
    assert!(max_diff(&logits(&gg, &ids[1]), &want) < 1e-5);

    // The GGUF keeps the source's tokenizer metadata and chat template.
    let (a, b) = (Gguf::open(&path).unwrap(), Gguf::open(&gguf_file).unwrap());
    for key in [
        "tokenizer.ggml.model",
        "tokenizer.ggml.pre",
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.token_type",
        "tokenizer.ggml.merges",
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.padding_token_id",
        "tokenizer.ggml.unknown_token_id",
        "tokenizer.chat_template",
        "general.license",
        "llama.rope.freq_base",
        "llama.context_length",
    ] {
        assert_eq!(a.get(key).unwrap(), b.get(key).unwrap(), "{key}");
    }
    assert_eq!(b.get("llama.block_count").unwrap().as_u64(), Some(2));

    // The HF folder's tokenizer files say what transformers needs.
    let config = json(&hf_dir.join("tokenizer_config.json"));
    assert_eq!(config["chat_template"].as_str(), a.get("tokenizer.chat_template").unwrap().as_str());
    assert_eq!(
        (config["eos_token"].as_str(), config["pad_token"].as_str(), config["model_max_length"].as_u64()),
        (Some("<|im_end|>"), Some("<|im_end|>"), Some(8192))
    );
    assert_eq!(json(&hf_dir.join("special_tokens_map.json"))["bos_token"], "<|im_start|>");
    assert_eq!(json(&hf_dir.join("generation_config.json"))["eos_token_id"], serde_json::json!([2, 0]));
}

/// A byte-level BPE over a handful of tokens, with one special token.
const TINY_TOKENIZER: &str = r#"{"version":"1.0","truncation":null,"padding":null,
"added_tokens":[{"id":5,"content":"<|im_end|>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],
"normalizer":null,"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true},
"post_processor":null,"decoder":{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true},
"model":{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":null,"end_of_word_suffix":null,
"fuse_unk":false,"byte_fallback":false,"ignore_merges":false,"vocab":{"a":0,"b":1,"ab":2,"Ġ":3,"Ġab":4,"<|im_end|>":5},"merges":["a b","Ġ ab"]}}"#;

/// The tiny Qwen3 golden folder with [`TINY_TOKENIZER`] and `tokenizer_config` beside it.
fn tiny_qwen3_folder(tokenizer_config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors", "generation_config.json"] {
        std::fs::copy(golden("qwen3-tiny").join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(dir.path().join("tokenizer.json"), TINY_TOKENIZER).unwrap();
    std::fs::write(dir.path().join("tokenizer_config.json"), tokenizer_config).unwrap();
    dir
}

#[test]
fn a_qwen3_folder_round_trips_through_gguf_and_sharded_half_precision_folders() {
    let source_dir =
        tiny_qwen3_folder(r#"{"chat_template": "{% for m in messages %}<{{ m.role }}>{{ m.content }}{{ eos_token }}{% endfor %}", "eos_token": "<|im_end|>"}"#);
    let source = load(ModelSource::HfDir(source_dir.path().to_path_buf()));
    let ids = [0, 1, 2, 3, 4, 5, 4, 2];
    let want = logits(&source, &ids);
    let out = tempfile::tempdir().unwrap();

    let gguf_file = out.path().join("q.gguf");
    gguf::write(&source, &gguf_file, ExportDtype::F32, "tiny", None).unwrap();
    let g = Gguf::open(&gguf_file).unwrap();
    assert_eq!((g.get("general.architecture").unwrap().as_str(), g.get("tokenizer.ggml.pre").unwrap().as_str()), (Some("qwen3"), Some("qwen2")));
    assert_eq!(g.get("qwen3.attention.key_length").unwrap().as_u64(), Some(24), "head_dim 24 ≠ hidden / heads");
    let tokens = g.get("tokenizer.ggml.tokens").unwrap().as_array().unwrap();
    assert_eq!(tokens.len(), 320, "one token per embedding row");
    assert_eq!((tokens[5].as_str(), tokens[6].as_str()), (Some("<|im_end|>"), Some("[PAD6]")));
    let back = load(ModelSource::Gguf(gguf_file));
    assert!(max_diff(&logits(&back, &ids), &want) < 1e-5);
    let chat = [Message::new("user", "ab")];
    assert_eq!(back.tokenizer.chat_prompt(&chat), "<user>ab<|im_end|>");
    assert_eq!(back.tokenizer.encode("ab ab<|im_end|>"), [2, 4, 5]);

    // Shards of at most 40 kB: several files and transformers' index naming each tensor's file.
    for dtype in [ExportDtype::F16, ExportDtype::Bf16] {
        let dir = out.path().join(dtype.name());
        write_folder(&source, &dir, HfOptions { dtype, max_shard_bytes: 40_000 }).unwrap();
        let index = json(&dir.join("model.safetensors.index.json"));
        let files: std::collections::BTreeSet<&str> = index["weight_map"].as_object().unwrap().values().map(|v| v.as_str().unwrap()).collect();
        assert!(files.len() > 2 && files.iter().all(|f| dir.join(f).is_file()), "{files:?}");
        assert!(files.contains(format!("model-00001-of-{:05}.safetensors", files.len()).as_str()));
        let half = load(ModelSource::HfDir(dir.clone()));
        assert_eq!(half.tokenizer.chat_prompt(&chat), "<user>ab<|im_end|>");
        let gap = max_diff(&logits(&half, &ids), &want);
        assert!(gap > 0.0 && gap < 2e-2, "{dtype:?}: rounded weights move the logits a little: {gap}");
    }
    let err = write_folder(&source, &out.path().join("q8"), HfOptions { dtype: ExportDtype::Q8_0, ..Default::default() }).unwrap_err();
    assert!(err.to_string().contains("q8_0 is a GGUF type"), "{err}");
}

#[test]
fn hf_folders_in_transformers_layouts_give_their_template_and_special_tokens() {
    // Named templates (the `default` one is used) and AddedToken objects.
    let named = r#"{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}"}],
        "bos_token": {"content": "ab", "lstrip": false}, "eos_token": {"content": "<|im_end|>"}, "pad_token": null}"#;
    let dir = tiny_qwen3_folder(named);
    let m = load(ModelSource::HfDir(dir.path().to_path_buf()));
    assert_eq!(m.tokenizer.chat_prompt(&[Message::new("user", "x")]), "abx");
    assert_eq!((m.tokenizer.special.eos.as_deref(), m.tokenizer.special.pad.as_deref()), (Some("<|im_end|>"), None));
    assert!(m.tokenizer.eos_ids.contains(&5), "{:?}", m.tokenizer.eos_ids);
    // A chat_template.jinja file wins over tokenizer_config.json (newer transformers write it).
    std::fs::write(dir.path().join("chat_template.jinja"), "J{{ messages[0].content }}").unwrap();
    assert_eq!(load(ModelSource::HfDir(dir.path().to_path_buf())).tokenizer.chat_prompt(&[Message::new("user", "x")]), "Jx");
    // A folder without any template is prompted with ChatML; a broken template is an error naming its file.
    std::fs::remove_file(dir.path().join("chat_template.jinja")).unwrap();
    std::fs::write(dir.path().join("tokenizer_config.json"), "{}").unwrap();
    assert_eq!(
        load(ModelSource::HfDir(dir.path().to_path_buf())).tokenizer.chat_prompt(&[Message::new("user", "x")]),
        "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n"
    );
    std::fs::write(dir.path().join("tokenizer_config.json"), r#"{"chat_template": "{% if %}"}"#).unwrap();
    let err = LoadedModel::load(&ModelSource::HfDir(dir.path().to_path_buf()), LoadOptions::default(), &Device::flex()).unwrap_err().to_string();
    assert!(err.contains("tokenizer_config.json") && err.contains("does not compile"), "{err}");
    std::fs::write(dir.path().join("tokenizer_config.json"), "{\"eos_token\": ").unwrap();
    let err = LoadedModel::load(&ModelSource::HfDir(dir.path().to_path_buf()), LoadOptions::default(), &Device::flex()).unwrap_err().to_string();
    assert!(err.contains("tokenizer_config.json") && err.contains("line 1"), "{err}");
}
