//! Writing a model where other tools read it: a complete HF folder ([`hf`]: transformers,
//! vLLM) or one GGUF file ([`gguf`]: llama.cpp, ollama). LoRA adapters are merged first, so
//! both are plain dense checkpoints.

pub mod gguf;
pub mod hf;

use crate::model::CausalLm;
use crate::weights::LoadError;
use burn::module::Module;
use burn::store::ModuleSnapshot;
use burn::tensor::DType;
use std::path::Path;
use std::str::FromStr;

/// How an export stores its weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportDtype {
    /// 32-bit float: bit-exact to the trained model.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    Bf16,
    /// llama.cpp's 8-bit blocks (GGUF only); norms stay f32.
    Q8_0,
}

impl FromStr for ExportDtype {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "f32" => Self::F32,
            "f16" => Self::F16,
            "bf16" => Self::Bf16,
            "q8_0" => Self::Q8_0,
            other => return Err(format!("unknown dtype {other:?} (f32, f16, bf16, q8_0)")),
        })
    }
}

impl ExportDtype {
    /// The name as written on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
            Self::Q8_0 => "q8_0",
        }
    }
}

/// One parameter by its HF name, row-major, as f32.
#[derive(Debug, Clone)]
pub struct NamedTensor {
    /// HF key (`model.layers.0.self_attn.q_proj.weight`).
    pub name: String,
    /// Shape, outermost first (`[out, in]` for a matrix).
    pub shape: Vec<usize>,
    /// Values.
    pub values: Vec<f32>,
}

/// Every parameter of `model` (LoRA merged) in HF order, widened to f32 (exact from bf16/f16).
/// `place` names the export in errors.
pub fn named_tensors(model: &CausalLm, place: &Path) -> Result<Vec<NamedTensor>, LoadError> {
    model
        .clone()
        .materialize()
        .collect(None, None, true)
        .into_iter()
        .map(|t| {
            let (name, dtype, shape, _, bytes) = t.into_parts().map_err(|e| LoadError::file(place, format!("cannot read a parameter: {e:?}")))?;
            let values = match dtype {
                DType::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
                DType::BF16 => bytes.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
                DType::F16 => bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
                other => return Err(LoadError::file(place, format!("{name}: cannot export dtype {other:?}"))),
            };
            Ok(NamedTensor { name, shape: shape.to_vec(), values })
        })
        .collect()
}
