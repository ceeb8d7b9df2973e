//! Building a [`CausalLm`] from named tensors (GGUF or HF safetensors). Names are the HF keys;
//! a GGUF is read through its llama.cpp names.

use crate::config::{Architecture, ModelConfig};
use crate::gguf::{Gguf, unpermute_rows};
use crate::layers::{Attention, DecoderLayer, Mlp, Proj, RmsNorm};
use crate::model::{CausalLm, Decoder, Embedding};
use burn::module::Param;
use burn::tensor::{DType, Device, Tensor, TensorData};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A model file that could not be loaded or written.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A problem in a named file.
    #[error("{}: {message}", file.display())]
    File {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A GGUF problem.
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
}

impl LoadError {
    /// An error about `file`.
    pub fn file(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        LoadError::File { file: file.into(), message: message.into() }
    }
}

/// Builds the model, asking `fetch(hf_name, expected_shape)` for each tensor in HF order.
/// A tensor whose shape differs from the config's is an error naming it and `source`.
pub fn assemble(
    source: &Path,
    config: &ModelConfig,
    mut fetch: impl FnMut(&str, &[usize]) -> Result<TensorData, LoadError>,
    device: &Device,
) -> Result<CausalLm, LoadError> {
    let c = config;
    let (d, hd, ffn) = (c.hidden_size, c.head_dim, c.intermediate_size);
    let (qd, kvd) = (c.num_attention_heads * hd, c.num_key_value_heads * hd);
    let mut param = |name: String, shape: &[usize]| -> Result<TensorData, LoadError> {
        let data = fetch(&name, shape)?;
        if data.shape().as_slice() != shape {
            let got = data.shape().as_slice().to_vec();
            return Err(LoadError::file(source, format!("tensor {name} has shape {got:?}, the config needs {shape:?}")));
        }
        Ok(data)
    };
    let mut p2 = |name: String, shape: [usize; 2]| param(name, &shape).map(|t| keep_dtype(t, device));
    let mut layers = Vec::with_capacity(c.num_hidden_layers);
    let embed = p2("model.embed_tokens.weight".into(), [c.vocab_size, d])?;
    let mut mats = Vec::new();
    for i in 0..c.num_hidden_layers {
        let pre = format!("model.layers.{i}");
        let proj = |w| Proj { weight: w };
        mats.push([
            proj(p2(format!("{pre}.self_attn.q_proj.weight"), [qd, d])?),
            proj(p2(format!("{pre}.self_attn.k_proj.weight"), [kvd, d])?),
            proj(p2(format!("{pre}.self_attn.v_proj.weight"), [kvd, d])?),
            proj(p2(format!("{pre}.self_attn.o_proj.weight"), [d, qd])?),
            proj(p2(format!("{pre}.mlp.gate_proj.weight"), [ffn, d])?),
            proj(p2(format!("{pre}.mlp.up_proj.weight"), [ffn, d])?),
            proj(p2(format!("{pre}.mlp.down_proj.weight"), [d, ffn])?),
        ]);
    }
    let lm_head = if c.tie_word_embeddings { None } else { Some(Proj { weight: p2("lm_head.weight".into(), [c.vocab_size, d])? }) };
    let mut norm =
        |name: String, width: usize| -> Result<RmsNorm, LoadError> { Ok(RmsNorm { weight: keep_dtype(param(name, &[width])?, device), eps: c.rms_norm_eps }) };
    for (i, [q, k, v, o, gate, up, down]) in mats.into_iter().enumerate() {
        let pre = format!("model.layers.{i}");
        let (q_norm, k_norm) = if c.qk_norm() {
            (Some(norm(format!("{pre}.self_attn.q_norm.weight"), hd)?), Some(norm(format!("{pre}.self_attn.k_norm.weight"), hd)?))
        } else {
            (None, None)
        };
        layers.push(DecoderLayer {
            self_attn: Attention {
                q_proj: q,
                k_proj: k,
                v_proj: v,
                o_proj: o,
                q_norm,
                k_norm,
                num_heads: c.num_attention_heads,
                num_kv_heads: c.num_key_value_heads,
                head_dim: hd,
            },
            mlp: Mlp { gate_proj: gate, up_proj: up, down_proj: down },
            input_layernorm: norm(format!("{pre}.input_layernorm.weight"), d)?,
            post_attention_layernorm: norm(format!("{pre}.post_attention_layernorm.weight"), d)?,
        });
    }
    let final_norm = norm("model.norm.weight".into(), d)?;
    Ok(CausalLm { model: Decoder { embed_tokens: Embedding { weight: embed }, layers, norm: final_norm }, lm_head, rope_theta: c.rope_theta })
}

/// A trainable parameter holding `data` in its own dtype (not the device default).
fn keep_dtype<const D: usize>(data: TensorData, device: &Device) -> Param<Tensor<D>> {
    let dtype = data.dtype();
    Param::from_tensor(Tensor::from_data(data, (device, dtype)))
}

/// Reads the model config from a GGUF's metadata (`general.architecture` llama or qwen3).
pub fn gguf_config(g: &Gguf) -> Result<ModelConfig, LoadError> {
    let arch_name = g.get("general.architecture")?.as_str().unwrap_or_default().to_string();
    let architecture = match arch_name.as_str() {
        "llama" => Architecture::Llama,
        "qwen3" => Architecture::Qwen3,
        other => return Err(g.error(format!("general.architecture {other:?} is not supported (llama, qwen3)")).into()),
    };
    let int = |key: &str| -> Result<usize, LoadError> {
        let full = format!("{arch_name}.{key}");
        g.get(&full)?.as_u64().map(|v| v as usize).ok_or_else(|| g.error(format!("{full} is not an unsigned integer")).into())
    };
    let float = |key: &str, default: f64| -> f64 { g.metadata.get(&format!("{arch_name}.{key}")).and_then(|v| v.as_f64()).unwrap_or(default) };
    let hidden = int("embedding_length")?;
    let heads = int("attention.head_count")?;
    let vocab = match int("vocab_size") {
        Ok(v) => v,
        Err(_) => g.get("tokenizer.ggml.tokens")?.as_array().map_or(0, <[_]>::len),
    };
    let token = |key: &str| g.metadata.get(key).and_then(|v| v.as_u64()).map(|v| v as u32);
    let config = ModelConfig {
        architecture,
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: int("feed_forward_length")?,
        num_hidden_layers: int("block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: int("attention.head_count_kv").unwrap_or(heads),
        head_dim: int("attention.key_length").unwrap_or(hidden / heads.max(1)),
        rope_theta: float("rope.freq_base", 10_000.0),
        rms_norm_eps: float("attention.layer_norm_rms_epsilon", 1e-5),
        tie_word_embeddings: !g.tensors.contains_key("output.weight"),
        max_position_embeddings: int("context_length").unwrap_or(4096),
        bos_token_id: token("tokenizer.ggml.bos_token_id"),
        eos_token_ids: token("tokenizer.ggml.eos_token_id").into_iter().collect(),
    };
    config.validate().map_err(|e| g.error(e))?;
    Ok(config)
}

/// The llama.cpp name of an HF tensor name, and whether its rows need un-permuting (Q, K of llama).
pub(crate) fn gguf_name(hf: &str) -> Option<(String, bool)> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some((f.to_string(), false));
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (i, tail) = rest.split_once('.')?;
    let (name, permuted) = match tail {
        "self_attn.q_proj.weight" => ("attn_q", true),
        "self_attn.k_proj.weight" => ("attn_k", true),
        "self_attn.v_proj.weight" => ("attn_v", false),
        "self_attn.o_proj.weight" => ("attn_output", false),
        "self_attn.q_norm.weight" => ("attn_q_norm", false),
        "self_attn.k_norm.weight" => ("attn_k_norm", false),
        "mlp.gate_proj.weight" => ("ffn_gate", false),
        "mlp.up_proj.weight" => ("ffn_up", false),
        "mlp.down_proj.weight" => ("ffn_down", false),
        "input_layernorm.weight" => ("attn_norm", false),
        "post_attention_layernorm.weight" => ("ffn_norm", false),
        _ => return None,
    };
    Some((format!("blk.{i}.{name}.weight"), permuted))
}

/// Loads a GGUF model, dequantised to f32; `max_layers` keeps only the first layers (tests).
pub fn load_gguf(path: &Path, max_layers: Option<usize>, device: &Device) -> Result<(CausalLm, ModelConfig), LoadError> {
    let g = Gguf::open(path)?;
    let mut config = gguf_config(&g)?;
    if let Some(n) = max_layers {
        config.num_hidden_layers = config.num_hidden_layers.min(n);
    }
    let llama = config.architecture == Architecture::Llama;
    let heads = |hf: &str| if hf.contains("q_proj") { config.num_attention_heads } else { config.num_key_value_heads };
    let fetch = |hf: &str, _: &[usize]| -> Result<TensorData, LoadError> {
        let (name, permuted) = gguf_name(hf).ok_or_else(|| g.error(format!("no GGUF name for {hf}")))?;
        let (mut values, shape) = g.dequantize(&name)?;
        if permuted && llama && shape.len() == 2 {
            values = unpermute_rows(&values, heads(hf), shape[1]);
        }
        Ok(TensorData::new(values, shape))
    };
    let model = assemble(path, &config, fetch, device)?;
    Ok((model, config))
}

/// The model config of an HF folder's `config.json`.
pub fn read_hf_config(dir: &Path) -> Result<ModelConfig, LoadError> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| LoadError::file(&path, format!("cannot read: {e}")))?;
    ModelConfig::from_hf_json(&text, &path).map_err(|e| LoadError::file(&path, e))
}

/// Loads an HF folder: `config.json` and one or many `*.safetensors`. Float tensors become
/// `dtype` (F32 or BF16); `max_layers` keeps only the first layers.
pub fn load_hf(dir: &Path, dtype: DType, max_layers: Option<usize>, device: &Device) -> Result<(CausalLm, ModelConfig), LoadError> {
    let mut config = read_hf_config(dir)?;
    if let Some(n) = max_layers {
        config.num_hidden_layers = config.num_hidden_layers.min(n);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| LoadError::file(dir, format!("cannot list: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(LoadError::file(dir, "no *.safetensors file in the folder"));
    }
    let bytes: Vec<(PathBuf, Vec<u8>)> = files
        .into_iter()
        .map(|p| std::fs::read(&p).map(|b| (p.clone(), b)).map_err(|e| LoadError::file(&p, format!("cannot read: {e}"))))
        .collect::<Result<_, _>>()?;
    let parsed: Vec<safetensors::SafeTensors> = bytes
        .iter()
        .map(|(p, b)| safetensors::SafeTensors::deserialize(b).map_err(|e| LoadError::file(p, format!("not a safetensors file: {e}"))))
        .collect::<Result<_, _>>()?;
    let index: HashMap<String, usize> = parsed.iter().enumerate().flat_map(|(k, st)| st.names().into_iter().map(move |n| (n.to_string(), k))).collect();
    let fetch = |hf: &str, _: &[usize]| -> Result<TensorData, LoadError> {
        let k = *index.get(hf).ok_or_else(|| LoadError::file(dir, format!("missing tensor {hf}")))?;
        let path = &bytes[k].0;
        let view = parsed[k].tensor(hf).map_err(|e| LoadError::file(path, format!("{hf}: {e}")))?;
        let values = to_f32(view.dtype(), view.data()).map_err(|e| LoadError::file(path, format!("{hf}: {e}")))?;
        let data = TensorData::new(values, view.shape().to_vec());
        Ok(if dtype == DType::F32 { data } else { data.convert_dtype(dtype) })
    };
    let model = assemble(dir, &config, fetch, device)?;
    Ok((model, config))
}

fn to_f32(dtype: safetensors::Dtype, raw: &[u8]) -> Result<Vec<f32>, String> {
    use half::{bf16, f16};
    Ok(match dtype {
        safetensors::Dtype::F32 => raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        safetensors::Dtype::BF16 => raw.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        safetensors::Dtype::F16 => raw.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        other => return Err(format!("dtype {other:?} is not a float type selfemo loads (F32, BF16, F16)")),
    })
}

/// Writes a file through a temporary sibling, fsync and a rename, so a crash never leaves a
/// partial file. (The datasets crate has the same helper for Parquet; this crate does not
/// depend on it, to keep arrow/parquet out of the model's build.)
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), LoadError> {
    use std::io::Write;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    written.and_then(|_| std::fs::rename(&tmp, path)).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        LoadError::file(path, format!("cannot write: {e}"))
    })
}

impl CausalLm {
    /// A randomly initialised model (tests, benches): N(0, 0.02) matrices, unit norms.
    pub fn random(config: &ModelConfig, seed: u64, device: &Device) -> Self {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut normal = move || {
            let (u1, u2): (f32, f32) = (rng.random::<f32>().max(1e-12), rng.random());
            0.02 * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
        };
        let fetch = |_: &str, shape: &[usize]| -> Result<TensorData, LoadError> {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = if shape.len() == 1 { vec![1.0; n] } else { (0..n).map(|_| normal()).collect() };
            Ok(TensorData::new(values, shape.to_vec()))
        };
        assemble(std::path::Path::new("<random init>"), config, fetch, device).expect("random weights have the configured shapes")
    }
}
