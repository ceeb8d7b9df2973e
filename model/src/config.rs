//! Model hyper-parameters, read from HF `config.json` or GGUF metadata, written back as HF.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// The decoder family: decides q/k-norm and the HF class name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// Llama (SmolLM2): no q/k-norm.
    Llama,
    /// Qwen3: RMSNorm on each head's q and k before RoPE.
    Qwen3,
}

/// Everything the transformer needs to know about its shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Llama or Qwen3.
    pub architecture: Architecture,
    /// Vocabulary size V.
    pub vocab_size: usize,
    /// Model width d.
    pub hidden_size: usize,
    /// SwiGLU inner width.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads H.
    pub num_attention_heads: usize,
    /// Key/value heads (GQA), divides H.
    pub num_key_value_heads: usize,
    /// Per-head width (explicit: Qwen3 uses 128 regardless of d / H).
    pub head_dim: usize,
    /// RoPE base θ.
    pub rope_theta: f64,
    /// RMSNorm ε.
    pub rms_norm_eps: f64,
    /// LM head shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Longest sequence the model was trained for.
    pub max_position_embeddings: usize,
    /// Beginning-of-sequence id, if the model has one.
    pub bos_token_id: Option<u32>,
    /// End-of-turn ids that stop generation.
    pub eos_token_ids: Vec<u32>,
}

impl ModelConfig {
    /// Whether the attention has q/k-norm.
    pub fn qk_norm(&self) -> bool {
        self.architecture == Architecture::Qwen3
    }

    /// Checks the shape relations, naming the field at fault.
    pub fn validate(&self) -> Result<(), String> {
        let nonzero = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
        ];
        if let Some((name, _)) = nonzero.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be > 0"));
        }
        if !self.num_attention_heads.is_multiple_of(self.num_key_value_heads) {
            return Err(format!("num_attention_heads ({}) must be a multiple of num_key_value_heads ({})", self.num_attention_heads, self.num_key_value_heads));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(format!("head_dim ({}) must be even for RoPE", self.head_dim));
        }
        Ok(())
    }

    /// A small random-init config for tests and benches.
    pub fn tiny(architecture: Architecture) -> Self {
        Self {
            architecture,
            vocab_size: 96,
            hidden_size: 32,
            intermediate_size: 48,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 8,
            rope_theta: 10_000.0,
            rms_norm_eps: 1e-6,
            tie_word_embeddings: architecture == Architecture::Llama,
            max_position_embeddings: 512,
            bos_token_id: None,
            eos_token_ids: vec![1],
        }
    }

    /// Reads an HF `config.json` (Llama or Qwen3 family).
    pub fn from_hf_json(text: &str, file: &Path) -> Result<Self, String> {
        let hf: HfConfig = serde_json::from_str(text).map_err(|e| format!("{}: {e}", file.display()))?;
        let architecture = match hf.model_type.as_str() {
            "llama" | "smollm" | "mistral" => Architecture::Llama,
            "qwen3" => Architecture::Qwen3,
            other => return Err(format!("{}: model_type {other:?} is not supported (llama, qwen3)", file.display())),
        };
        let head_dim = hf.head_dim.unwrap_or(hf.hidden_size / hf.num_attention_heads.max(1));
        let rope_theta = hf.rope_theta.or(hf.rope_parameters.and_then(|r| r.rope_theta)).unwrap_or(10_000.0);
        let config = Self {
            architecture,
            vocab_size: hf.vocab_size,
            hidden_size: hf.hidden_size,
            intermediate_size: hf.intermediate_size,
            num_hidden_layers: hf.num_hidden_layers,
            num_attention_heads: hf.num_attention_heads,
            num_key_value_heads: hf.num_key_value_heads.unwrap_or(hf.num_attention_heads),
            head_dim,
            rope_theta,
            rms_norm_eps: hf.rms_norm_eps,
            tie_word_embeddings: hf.tie_word_embeddings.unwrap_or(false),
            max_position_embeddings: hf.max_position_embeddings.unwrap_or(4096),
            bos_token_id: hf.bos_token_id,
            eos_token_ids: hf.eos_token_id.map(OneOrMany::into_vec).unwrap_or_default(),
        };
        config.validate().map_err(|e| format!("{}: {e}", file.display()))?;
        Ok(config)
    }

    /// The HF `config.json` transformers loads as LlamaForCausalLM / Qwen3ForCausalLM.
    pub fn to_hf_json(&self) -> serde_json::Value {
        let (class, model_type) = match self.architecture {
            Architecture::Llama => ("LlamaForCausalLM", "llama"),
            Architecture::Qwen3 => ("Qwen3ForCausalLM", "qwen3"),
        };
        let eos = match self.eos_token_ids.as_slice() {
            [one] => serde_json::json!(one),
            many => serde_json::json!(many),
        };
        serde_json::json!({
            "architectures": [class],
            "model_type": model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rope_theta": self.rope_theta,
            "rope_parameters": {"rope_theta": self.rope_theta, "rope_type": "default"},
            "rms_norm_eps": self.rms_norm_eps,
            "tie_word_embeddings": self.tie_word_embeddings,
            "max_position_embeddings": self.max_position_embeddings,
            "attention_bias": false,
            "mlp_bias": false,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": eos,
            "torch_dtype": "float32",
            "use_cache": true,
        })
    }
}

#[derive(Deserialize)]
struct HfConfig {
    model_type: String,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rope_theta: Option<f64>,
    rope_parameters: Option<RopeParameters>,
    rms_norm_eps: f64,
    tie_word_embeddings: Option<bool>,
    max_position_embeddings: Option<usize>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<OneOrMany>,
}

#[derive(Deserialize)]
struct RopeParameters {
    rope_theta: Option<f64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(u32),
    Many(Vec<u32>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<u32> {
        match self {
            OneOrMany::One(x) => vec![x],
            OneOrMany::Many(v) => v,
        }
    }
}

impl ModelConfig {
    /// Multiply-add FLOPs (2 per MAC) of the decoder trunk per token, attending over `context`
    /// keys: projections and SwiGLU (2 · trunk params) plus QKᵀ and AV (4 · L · H · hd · context).
    /// The vocabulary projection is counted separately ([`ModelConfig::head_flops`]).
    pub fn trunk_flops_per_token(&self, context: usize) -> f64 {
        let (d, hd, l) = (self.hidden_size as f64, self.head_dim as f64, self.num_hidden_layers as f64);
        let (h, kv, ffn) = (self.num_attention_heads as f64, self.num_key_value_heads as f64, self.intermediate_size as f64);
        let per_layer = d * h * hd * 2.0 + d * kv * hd * 2.0 + 3.0 * d * ffn;
        2.0 * l * per_layer + 4.0 * l * h * hd * context as f64
    }

    /// FLOPs of one row of the vocabulary projection.
    pub fn head_flops(&self) -> f64 {
        2.0 * self.hidden_size as f64 * self.vocab_size as f64
    }
}
