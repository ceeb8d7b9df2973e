//! A complete HF folder: `config.json`, `model.safetensors` (or shards with their index),
//! `tokenizer.json`, `tokenizer_config.json` (the model's chat template, its special tokens,
//! `model_max_length`), `special_tokens_map.json` and `generation_config.json` (every id that
//! ends a turn). transformers' `AutoTokenizer.apply_chat_template` on it yields the token ids
//! selfemo prompts the model with.

use super::{ExportDtype, NamedTensor, named_tensors};
use crate::LoadedModel;
use crate::config::ModelConfig;
use crate::gguf::GgmlType;
use crate::model::CausalLm;
use crate::weights::{LoadError, write_file};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;

/// How the folder stores its weights.
#[derive(Debug, Clone, Copy)]
pub struct HfOptions {
    /// f32, f16 or bf16 (`q8_0` is GGUF only).
    pub dtype: ExportDtype,
    /// Above this many bytes of weights, `model-0000k-of-0000n.safetensors` shards and
    /// `model.safetensors.index.json` (transformers' layout); 5 GB as in `save_pretrained`.
    pub max_shard_bytes: u64,
}

impl Default for HfOptions {
    fn default() -> Self {
        Self { dtype: ExportDtype::F32, max_shard_bytes: 5_000_000_000 }
    }
}

/// Writes the folder's files into `dir` (created if missing), each through a temporary file.
pub fn write_folder(m: &LoadedModel, dir: &Path, options: HfOptions) -> Result<(), LoadError> {
    write_model(&m.model, &m.config, dir, options)?;
    let tok = &m.tokenizer;
    tok.save(&dir.join("tokenizer.json"))?;
    let s = &tok.special;
    let pad = s.pad.clone().or_else(|| tok.id_to_token(tok.pad_id));
    write_json(
        &dir.join("tokenizer_config.json"),
        &json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "chat_template": tok.chat_template.source(),
            "bos_token": s.bos,
            "eos_token": s.eos,
            "pad_token": pad,
            "unk_token": s.unk,
            "model_max_length": m.config.max_position_embeddings,
            "clean_up_tokenization_spaces": false,
        }),
    )?;
    let map: serde_json::Map<String, serde_json::Value> = [("bos_token", &s.bos), ("eos_token", &s.eos), ("pad_token", &pad), ("unk_token", &s.unk)]
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_string(), json!(v.as_ref()?))))
        .collect();
    write_json(&dir.join("special_tokens_map.json"), &serde_json::Value::Object(map))?;
    write_json(&dir.join("generation_config.json"), &json!({ "bos_token_id": m.config.bos_token_id, "eos_token_id": tok.eos_ids, "pad_token_id": tok.pad_id }))
}

/// Writes only the weights and `config.json` of `model` into `dir` (a model without a
/// tokenizer, as the tests' tiny random ones).
pub fn write_model(model: &CausalLm, config: &ModelConfig, dir: &Path, options: HfOptions) -> Result<(), LoadError> {
    let (stored, torch_dtype) = match options.dtype {
        ExportDtype::F32 => ((safetensors::Dtype::F32, GgmlType::F32), "float32"),
        ExportDtype::F16 => ((safetensors::Dtype::F16, GgmlType::F16), "float16"),
        ExportDtype::Bf16 => ((safetensors::Dtype::BF16, GgmlType::BF16), "bfloat16"),
        ExportDtype::Q8_0 => return Err(LoadError::file(dir, "q8_0 is a GGUF type: an HF folder takes f32, f16 or bf16")),
    };
    std::fs::create_dir_all(dir).map_err(|e| LoadError::file(dir, format!("cannot create: {e}")))?;
    write_weights(dir, &named_tensors(model, dir)?, stored, options.max_shard_bytes)?;
    let mut hf_config = config.to_hf_json();
    hf_config["torch_dtype"] = json!(torch_dtype);
    write_json(&dir.join("config.json"), &hf_config)
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), LoadError> {
    write_file(path, &serde_json::to_vec_pretty(value).expect("json values serialise"))
}

/// The tensors in `dtype` (stored as `ty`), in one file or in shards of at most
/// `max_shard_bytes` (a tensor larger than that gets a shard of its own) with
/// `model.safetensors.index.json`. Each shard is encoded only when it is written.
fn write_weights(dir: &Path, tensors: &[NamedTensor], (dtype, ty): (safetensors::Dtype, GgmlType), max_shard_bytes: u64) -> Result<(), LoadError> {
    let element_bytes = if ty == GgmlType::F32 { 4 } else { 2 };
    let sizes: Vec<u64> = tensors.iter().map(|t| (t.values.len() * element_bytes) as u64).collect();
    let mut shards: Vec<Vec<usize>> = vec![Vec::new()];
    let mut size = 0u64;
    for (i, n) in sizes.iter().enumerate() {
        if size > 0 && size + n > max_shard_bytes {
            shards.push(Vec::new());
            size = 0;
        }
        shards.last_mut().expect("one shard at least").push(i);
        size += n;
    }
    let count = shards.len();
    let file_name = |k: usize| if count == 1 { "model.safetensors".to_string() } else { format!("model-{:05}-of-{count:05}.safetensors", k + 1) };
    let mut weight_map = serde_json::Map::new();
    for (k, members) in shards.iter().enumerate() {
        let path = dir.join(file_name(k));
        let encoded: Vec<Vec<u8>> =
            members.iter().map(|&i| crate::gguf_write::encode(ty, &tensors[i].values).expect("float types encode any length")).collect();
        let views: Vec<(String, safetensors::tensor::TensorView)> = members
            .iter()
            .zip(&encoded)
            .map(|(&i, bytes)| {
                let t = &tensors[i];
                weight_map.insert(t.name.clone(), json!(file_name(k)));
                let view =
                    safetensors::tensor::TensorView::new(dtype, t.shape.clone(), bytes).map_err(|e| LoadError::file(&path, format!("{}: {e}", t.name)))?;
                Ok((t.name.clone(), view))
            })
            .collect::<Result<_, LoadError>>()?;
        let metadata = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
        let bytes = safetensors::serialize(views, metadata).map_err(|e| LoadError::file(&path, format!("cannot serialise: {e}")))?;
        write_file(&path, &bytes)?;
    }
    if count > 1 {
        let total: u64 = sizes.iter().sum();
        write_json(&dir.join("model.safetensors.index.json"), &json!({ "metadata": { "total_size": total }, "weight_map": weight_map }))?;
    }
    Ok(())
}
