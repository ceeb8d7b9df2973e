//! The SELF-EMO policy: a Llama/Qwen3-family decoder in burn.
//!
//! Loads the embedded default model (SmolLM2-135M-Instruct GGUF, see [`fetch`]) or an HF
//! folder, generates with a KV cache ([`generate`]), scores completions for training
//! ([`score`]), prompts it with its own chat template ([`chat_template`]), and exports HF
//! folders and GGUF files that transformers, vLLM and llama.cpp load ([`export`]).

pub mod attention;
pub mod chat_template;
pub mod config;
pub mod device;
pub mod export;
pub mod fetch;
pub mod few_rows;
pub mod generate;
pub mod gguf;
pub mod gguf_write;
pub mod label_scores;
pub mod layers;
pub mod model;
pub mod rope;
pub mod sampling;
pub mod score;
pub mod steering;
pub mod tokenizer;
pub mod tree_attention;
pub mod trie;
pub mod weights;

pub use config::{Architecture, ModelConfig};
pub use device::parse_device;
pub use generate::{Generation, generate};
pub use model::{CausalLm, KvCache};
pub use sampling::SamplingConfig;
pub use score::{completion_logprobs, completion_logprobs_tree};
pub use steering::EmotionVectors;
pub use tokenizer::{Message, TextTokenizer};
pub use weights::LoadError;

use burn::tensor::{DType, Device};
use std::path::{Path, PathBuf};

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// The embedded default (fetched on first use).
    Default,
    /// A GGUF file (llama or qwen3 architecture).
    Gguf(PathBuf),
    /// An HF folder: config.json, *.safetensors, tokenizer.json.
    HfDir(PathBuf),
}

impl ModelSource {
    /// `default`, a `.gguf` file, or a folder.
    pub fn parse(spec: &str) -> Self {
        let p = Path::new(spec);
        match spec {
            "default" | "" => ModelSource::Default,
            _ if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) => ModelSource::Gguf(p.to_path_buf()),
            _ => ModelSource::HfDir(p.to_path_buf()),
        }
    }
}

/// How to load.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// Keep only the first n layers (tests and quick experiments).
    pub max_layers: Option<usize>,
    /// Parameter dtype for HF folders (F32 or BF16); GGUFs dequantise to F32.
    pub dtype: DType,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { max_layers: None, dtype: DType::F32 }
    }
}

/// A model with its config and tokenizer.
#[derive(Debug)]
pub struct LoadedModel {
    /// The network.
    pub model: CausalLm,
    /// Its shape.
    pub config: ModelConfig,
    /// Its tokenizer and chat template.
    pub tokenizer: TextTokenizer,
}

/// Any failure to get or load a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The default model could not be fetched.
    #[error(transparent)]
    Fetch(#[from] fetch::FetchError),
    /// A model file is bad.
    #[error(transparent)]
    Load(#[from] LoadError),
}

impl LoadedModel {
    /// Loads a model onto `device` (fetching the default one when needed).
    pub fn load(source: &ModelSource, options: LoadOptions, device: &Device) -> Result<Self, ModelError> {
        match source {
            ModelSource::Default => {
                let path = fetch::ensure_default_model()?;
                Self::load(&ModelSource::Gguf(path), options, device)
            }
            ModelSource::Gguf(path) => {
                let tokenizer = Self::load_tokenizer(source)?;
                let (model, config) = weights::load_gguf(path, options.max_layers, device)?;
                Ok(Self { model, config, tokenizer })
            }
            ModelSource::HfDir(dir) => {
                let (model, config) = weights::load_hf(dir, options.dtype, options.max_layers, device)?;
                let tokenizer = TextTokenizer::from_hf_dir(dir, &config.eos_token_ids)?;
                Ok(Self { model, config, tokenizer })
            }
        }
    }

    /// Only the tokenizer (and chat template) of a model source, without its weights.
    pub fn load_tokenizer(source: &ModelSource) -> Result<TextTokenizer, ModelError> {
        match source {
            ModelSource::Default => Self::load_tokenizer(&ModelSource::Gguf(fetch::ensure_default_model()?)),
            ModelSource::Gguf(path) => Ok(TextTokenizer::from_gguf(&gguf::Gguf::open(path).map_err(LoadError::from)?)?),
            ModelSource::HfDir(dir) => Ok(TextTokenizer::from_hf_dir(dir, &weights::read_hf_config(dir)?.eos_token_ids)?),
        }
    }

    /// Writes a complete HF folder of the model in f32 (see [`export::hf`]).
    pub fn export(&self, dir: &Path) -> Result<(), LoadError> {
        export::hf::write_folder(self, dir, export::hf::HfOptions::default())
    }

    /// Generates replies to chat prompts (one per prompt), decoded without special tokens;
    /// `steer[l]` is added to layer l's attention output at the last position of every step.
    pub fn chat(&self, prompts: &[Vec<Message>], sampling: &SamplingConfig, seed: u64, steer: Option<&[burn::tensor::Tensor<2>]>) -> Vec<(String, Generation)> {
        let ids: Vec<Vec<u32>> = prompts.iter().map(|m| self.tokenizer.encode(&self.tokenizer.chat_prompt(m))).collect();
        let seeds: Vec<u64> = (0..ids.len() as u64).map(|i| seed.wrapping_add(i)).collect();
        generate(&self.model, &ids, sampling, &seeds, &self.tokenizer.eos_ids, self.tokenizer.pad_id, steer)
            .into_iter()
            .map(|g| (self.tokenizer.decode(&g.tokens, true), g))
            .collect()
    }
}
