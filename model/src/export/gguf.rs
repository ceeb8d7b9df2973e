//! One GGUF file that llama.cpp loads: architecture `llama` (SmolLM2, Llama; Q/K rows permuted
//! back to llama.cpp's interleaved RoPE layout) or `qwen3`, the hyper-parameters under
//! llama.cpp's keys, the byte-level BPE tokenizer (`tokenizer.ggml.*`, llama.cpp's name for the
//! pre-tokenizer) and the model's chat template (`tokenizer.chat_template`).

use super::{ExportDtype, named_tensors};
use crate::LoadedModel;
use crate::config::Architecture;
use crate::gguf::{GgmlType, permute_rows};
use crate::gguf_write::{MetaValue, TensorEntry};
use crate::tokenizer::TextTokenizer;
use crate::weights::{LoadError, gguf_name, write_file};
use std::path::Path;

/// ggml token types (llama.cpp's `llama_token_type`).
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;

/// Writes `m` as a GGUF file at `path` (through a temporary file), named `name` in
/// `general.name`, with `license` in `general.license` when known. Matrices are stored as `dtype`; norms always f32, and a matrix whose rows
/// are not whole Q8_0 blocks stays f32 too (as llama.cpp's converter does for such tensors).
pub fn write(m: &LoadedModel, path: &Path, dtype: ExportDtype, name: &str, license: Option<&str>) -> Result<(), LoadError> {
    let err = |message: String| LoadError::file(path, message);
    let matrix_type = match dtype {
        ExportDtype::F32 => GgmlType::F32,
        ExportDtype::F16 => GgmlType::F16,
        ExportDtype::Bf16 => GgmlType::BF16,
        ExportDtype::Q8_0 => GgmlType::Q8_0,
    };
    let c = &m.config;
    let llama = c.architecture == Architecture::Llama;
    let mut tensors = Vec::new();
    for t in named_tensors(&m.model, path)? {
        let (gguf, permuted) = gguf_name(&t.name).ok_or_else(|| err(format!("no GGUF name for tensor {}", t.name)))?;
        let mut values = t.values;
        if permuted && llama {
            let heads = if t.name.contains("q_proj") { c.num_attention_heads } else { c.num_key_value_heads };
            values = permute_rows(&values, heads, t.shape[1]);
        }
        let whole_blocks = t.shape.last().is_some_and(|n| n.is_multiple_of(32));
        let ty = match (t.shape.len(), matrix_type) {
            (1, _) => GgmlType::F32,
            (_, GgmlType::Q8_0) if !whole_blocks => GgmlType::F32,
            (_, ty) => ty,
        };
        tensors.push(TensorEntry { name: gguf, shape: t.shape, values, ty });
    }
    let mut metadata = model_metadata(m, dtype, name);
    metadata.extend(license.map(|l| ("general.license".to_string(), MetaValue::Str(l.into()))));
    metadata.extend(tokenizer_metadata(&m.tokenizer, c.vocab_size, c.architecture).map_err(err)?);
    let bytes = crate::gguf_write::to_bytes(&metadata, &tensors).map_err(err)?;
    write_file(path, &bytes)
}

fn model_metadata(m: &LoadedModel, dtype: ExportDtype, name: &str) -> Vec<(String, MetaValue)> {
    let c = &m.config;
    let arch = match c.architecture {
        Architecture::Llama => "llama",
        Architecture::Qwen3 => "qwen3",
    };
    // llama_ftype: ALL_F32, MOSTLY_F16, MOSTLY_Q8_0, MOSTLY_BF16.
    let file_type = match dtype {
        ExportDtype::F32 => 0,
        ExportDtype::F16 => 1,
        ExportDtype::Q8_0 => 7,
        ExportDtype::Bf16 => 32,
    };
    let u = |v: usize| MetaValue::U32(v as u32);
    let mut out = vec![
        ("general.architecture".to_string(), MetaValue::Str(arch.into())),
        ("general.name".to_string(), MetaValue::Str(name.into())),
        ("general.file_type".to_string(), MetaValue::U32(file_type)),
        ("general.quantization_version".to_string(), MetaValue::U32(2)),
    ];
    let keyed = [
        ("context_length", u(c.max_position_embeddings)),
        ("embedding_length", u(c.hidden_size)),
        ("block_count", u(c.num_hidden_layers)),
        ("feed_forward_length", u(c.intermediate_size)),
        ("attention.head_count", u(c.num_attention_heads)),
        ("attention.head_count_kv", u(c.num_key_value_heads)),
        ("attention.key_length", u(c.head_dim)),
        ("attention.value_length", u(c.head_dim)),
        ("rope.dimension_count", u(c.head_dim)),
        ("rope.freq_base", MetaValue::F32(c.rope_theta as f32)),
        ("attention.layer_norm_rms_epsilon", MetaValue::F32(c.rms_norm_eps as f32)),
        ("vocab_size", u(c.vocab_size)),
    ];
    out.extend(keyed.into_iter().map(|(k, v)| (format!("{arch}.{k}"), v)));
    out
}

/// The `tokenizer.ggml.*` keys and the chat template. The token list covers the model's
/// vocabulary rows; ids without a token (a padded embedding) become `[PAD{i}]`, UNUSED.
fn tokenizer_metadata(tok: &TextTokenizer, vocab_size: usize, architecture: Architecture) -> Result<Vec<(String, MetaValue)>, String> {
    let json: serde_json::Value = serde_json::from_str(&tok.to_json()?).map_err(|e| format!("tokenizer JSON: {e}"))?;
    let model = &json["model"];
    if model["type"] != "BPE" {
        return Err(format!("only byte-level BPE tokenizers export to GGUF, this one is {}", model["type"]));
    }
    let vocab = model["vocab"].as_object().ok_or("tokenizer JSON has no model.vocab")?;
    let mut tokens: Vec<Option<(String, i32)>> = Vec::new();
    let mut put = |id: u64, token: &str, ty: i32| {
        let id = id as usize;
        if tokens.len() <= id {
            tokens.resize(id + 1, None);
        }
        tokens[id] = Some((token.to_string(), ty));
    };
    for (token, id) in vocab {
        put(id.as_u64().ok_or("a vocabulary id is not an integer")?, token, NORMAL);
    }
    for added in json["added_tokens"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let (Some(id), Some(content)) = (added["id"].as_u64(), added["content"].as_str()) else { return Err("an added token lacks its id or content".into()) };
        put(id, content, if added["special"].as_bool() == Some(true) { CONTROL } else { USER_DEFINED });
    }
    if tokens.len() < vocab_size {
        tokens.resize(vocab_size, None);
    }
    let (strings, types): (Vec<String>, Vec<i32>) = tokens.into_iter().enumerate().map(|(i, t)| t.unwrap_or_else(|| (format!("[PAD{i}]"), UNUSED))).unzip();
    let merges: Vec<String> = model["merges"]
        .as_array()
        .ok_or("tokenizer JSON has no model.merges")?
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => Ok(s.clone()),
            serde_json::Value::Array(pair) if pair.len() == 2 => {
                Ok(format!("{} {}", pair[0].as_str().unwrap_or_default(), pair[1].as_str().unwrap_or_default()))
            }
            other => Err(format!("a merge is neither \"a b\" nor [a, b]: {other}")),
        })
        .collect::<Result<_, _>>()?;
    let pre = llama_cpp_pre(tok, &json, architecture)?;
    let id = |t: &Option<String>| t.as_deref().and_then(|t| tok.token_to_id(t));
    let mut out = vec![
        ("tokenizer.ggml.model".to_string(), MetaValue::Str("gpt2".into())),
        ("tokenizer.ggml.pre".to_string(), MetaValue::Str(pre)),
        ("tokenizer.ggml.tokens".to_string(), MetaValue::Strings(strings)),
        ("tokenizer.ggml.token_type".to_string(), MetaValue::I32s(types)),
        ("tokenizer.ggml.merges".to_string(), MetaValue::Strings(merges)),
    ];
    let eos = id(&tok.special.eos).or(tok.eos_ids.first().copied());
    let ids = [("bos", id(&tok.special.bos)), ("eos", eos), ("unknown", id(&tok.special.unk)), ("padding", Some(tok.pad_id))];
    out.extend(ids.into_iter().filter_map(|(k, v)| Some((format!("tokenizer.ggml.{k}_token_id"), MetaValue::U32(v?)))));
    // selfemo's prompts carry every special token they need: llama.cpp must add none.
    out.push(("tokenizer.ggml.add_bos_token".to_string(), MetaValue::Bool(false)));
    out.push(("tokenizer.ggml.add_eos_token".to_string(), MetaValue::Bool(false)));
    out.push(("tokenizer.chat_template".to_string(), MetaValue::Str(tok.chat_template.source().to_string())));
    Ok(out)
}

/// llama.cpp's name for the pre-tokenizer: the source GGUF's, else recognised from the
/// tokenizer (SmolLM2's digits + byte-level split is `smollm`; Qwen3's is `qwen2`).
fn llama_cpp_pre(tok: &TextTokenizer, json: &serde_json::Value, architecture: Architecture) -> Result<String, String> {
    if let Some(pre) = &tok.gguf_pre {
        return Ok(pre.clone());
    }
    if architecture == Architecture::Qwen3 {
        return Ok("qwen2".into());
    }
    let steps = json["pre_tokenizer"]["pretokenizers"].as_array().map(Vec::as_slice).unwrap_or_default();
    let kinds: Vec<&str> = steps.iter().filter_map(|p| p["type"].as_str()).collect();
    if kinds == ["Digits", "ByteLevel"] && steps[0]["individual_digits"] == true {
        return Ok("smollm".into());
    }
    Err(format!(
        "cannot tell which llama.cpp pre-tokenizer (tokenizer.ggml.pre) matches this tokenizer's ({}); SmolLM2 and Qwen3 tokenizers are recognised",
        json["pre_tokenizer"]
    ))
}
