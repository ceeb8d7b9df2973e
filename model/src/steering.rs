//! Emotion vectors for activation steering (the Emotion Vectors seed): for emotion e and layer l,
//! EV_e^l = mean over queries q of [a_l(reply with e | q) − a_l(reply neutrally | q)], where a_l
//! is layer l's attention-block output at the last prompt position (where the reply begins).
//! Generation adds Σ_e α_e EV_e^l to every layer's attention output at the last position.

use crate::generate::left_pad;
use crate::model::CausalLm;
use crate::tokenizer::{Message, TextTokenizer};
use crate::weights::{LoadError, write_file};
use burn::tensor::{Device, Tensor, TensorData};
use std::collections::HashMap;
use std::path::Path;

/// Everyday user turns the vectors are averaged over (ours, written for this purpose).
pub const QUERIES: [&str; 12] = [
    "How was your day?",
    "I just got back from the store.",
    "Did you see the message I sent you?",
    "We are meeting at six tomorrow.",
    "My sister is moving to another city.",
    "The train was late again this morning.",
    "I finished the report last night.",
    "What do you think about the new neighbours?",
    "They changed the schedule without telling anyone.",
    "I found my old photos in the attic.",
    "The test results came back today.",
    "Can you tell me what happened at the party?",
];

/// The system message that conditions a reply; `None` = neutral.
fn instruction(emotion: Option<&str>) -> String {
    match emotion {
        Some(e) => format!("Reply with {e}. Let the feeling show in every word."),
        None => "Reply neutrally. Keep every word plain and calm.".into(),
    }
}

/// Emotion vectors of one model: `vectors[e][l]` is EV_e^l, `[d]`.
#[derive(Debug, Clone, PartialEq)]
pub struct EmotionVectors {
    /// The model they were extracted from (a name or path, for the reader).
    pub model: String,
    /// Emotion names, in `vectors` order.
    pub emotions: Vec<String>,
    /// Per emotion, per layer, the d values.
    pub vectors: Vec<Vec<Vec<f32>>>,
}

impl EmotionVectors {
    /// Extracts the vectors of `emotions` from `model` over `queries` (deterministic: greedy
    /// forward passes, no sampling).
    pub fn extract(model: &CausalLm, tok: &TextTokenizer, model_name: &str, emotions: &[&str], queries: &[&str]) -> Self {
        let mean_activations = |emotion: Option<&str>| -> Vec<Vec<f32>> {
            let prompts: Vec<Vec<u32>> =
                queries.iter().map(|q| tok.encode(&tok.chat_prompt(&[Message::new("system", instruction(emotion)), Message::new("user", *q)]))).collect();
            let device = model.model.embed_tokens.weight.device();
            let (ids, valid) = left_pad(&prompts, tok.pad_id, &device);
            model.attention_at_last(ids, &valid).into_iter().map(|a| a.mean_dim(0).into_data().try_to_vec::<f32>().expect("activations are f32")).collect()
        };
        let neutral = mean_activations(None);
        let vectors = emotions
            .iter()
            .map(|e| mean_activations(Some(e)).iter().zip(&neutral).map(|(a, n)| a.iter().zip(n).map(|(x, y)| x - y).collect()).collect())
            .collect();
        Self { model: model_name.into(), emotions: emotions.iter().map(|e| e.to_string()).collect(), vectors }
    }

    /// Layers per vector.
    pub fn num_layers(&self) -> usize {
        self.vectors.first().map_or(0, Vec::len)
    }

    /// The per-layer steering vectors Σ_e α_e EV_e^l for a mixture `(emotion, α)`, each `[1, d]`
    /// (one row: every generated row alike); an unknown emotion is an error naming the ones
    /// there are.
    pub fn mix(&self, mixture: &[(String, f64)], device: &Device) -> Result<Vec<Tensor<2>>, String> {
        self.mix_rows(std::slice::from_ref(&mixture.to_vec()), device)
    }

    /// One mixture per generated row: per layer a `[rows, d]` tensor whose row i is
    /// Σ_e α_e EV_e^l of `mixtures[i]` (an empty mixture is a zero row: no steering).
    pub fn mix_rows(&self, mixtures: &[Vec<(String, f64)>], device: &Device) -> Result<Vec<Tensor<2>>, String> {
        let d = self.vectors.first().and_then(|v| v.first()).map_or(0, Vec::len);
        let rows = mixtures.len();
        let mut layers = vec![vec![0.0f32; rows * d]; self.num_layers()];
        for (r, mixture) in mixtures.iter().enumerate() {
            for (l, layer) in self.mix_one(mixture)?.into_iter().enumerate() {
                layers[l][r * d..(r + 1) * d].copy_from_slice(&layer);
            }
        }
        Ok(layers.into_iter().map(|v| Tensor::from_data(TensorData::new(v, [rows, d]), device)).collect())
    }

    fn mix_one(&self, mixture: &[(String, f64)]) -> Result<Vec<Vec<f32>>, String> {
        let d = self.vectors.first().and_then(|v| v.first()).map_or(0, Vec::len);
        let mut sum = vec![vec![0.0f32; d]; self.num_layers()];
        for (name, alpha) in mixture {
            let e = self
                .emotions
                .iter()
                .position(|x| x.eq_ignore_ascii_case(name))
                .ok_or_else(|| format!("no vector for {name:?}; the file has {}", self.emotions.join(", ")))?;
            for (acc, v) in sum.iter_mut().zip(&self.vectors[e]) {
                acc.iter_mut().zip(v).for_each(|(a, x)| *a += *alpha as f32 * x);
            }
        }
        Ok(sum)
    }

    /// Writes a safetensors file: one `[layers, d]` f32 tensor per emotion, and the model name,
    /// layer count and emotion names in its metadata. Atomic (temporary file, rename).
    pub fn save(&self, path: &Path) -> Result<(), LoadError> {
        let (layers, d) = (self.num_layers(), self.vectors.first().and_then(|v| v.first()).map_or(0, Vec::len));
        let bytes: Vec<Vec<u8>> = self.vectors.iter().map(|v| v.iter().flatten().flat_map(|x| x.to_le_bytes()).collect()).collect();
        let views = self
            .emotions
            .iter()
            .zip(&bytes)
            .map(|(e, b)| {
                Ok((
                    e.clone(),
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![layers, d], b)
                        .map_err(|x| LoadError::file(path, format!("{e}: {x}")))?,
                ))
            })
            .collect::<Result<Vec<_>, LoadError>>()?;
        let metadata = HashMap::from([
            ("model".to_string(), self.model.clone()),
            ("layers".to_string(), layers.to_string()),
            ("emotions".to_string(), self.emotions.join(",")),
        ]);
        let out = safetensors::serialize(views, Some(metadata)).map_err(|e| LoadError::file(path, format!("cannot serialise: {e}")))?;
        write_file(path, &out)
    }

    /// Reads a file written by [`EmotionVectors::save`].
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let bytes = std::fs::read(path).map_err(|e| LoadError::file(path, format!("cannot read: {e}")))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| LoadError::file(path, format!("not a safetensors file: {e}")))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let field = |k: &str| meta.get(k).cloned().ok_or_else(|| LoadError::file(path, format!("metadata lacks {k:?}: not an emotion-vector file")));
        let (model, emotions) = (field("model")?, field("emotions")?);
        let layers: usize = field("layers")?.parse().map_err(|_| LoadError::file(path, "metadata \"layers\" is not a number"))?;
        let tensors = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| LoadError::file(path, format!("not a safetensors file: {e}")))?;
        let emotions: Vec<String> = emotions.split(',').map(str::to_string).collect();
        let vectors = emotions
            .iter()
            .map(|e| {
                let t = tensors.tensor(e).map_err(|x| LoadError::file(path, format!("{e}: {x}")))?;
                if t.dtype() != safetensors::Dtype::F32 || t.shape().len() != 2 || t.shape()[0] != layers {
                    return Err(LoadError::file(path, format!("{e}: expected f32 [{layers}, d], found {:?} {:?}", t.dtype(), t.shape())));
                }
                let values: Vec<f32> = t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
                Ok(values.chunks(t.shape()[1]).map(<[f32]>::to_vec).collect())
            })
            .collect::<Result<_, LoadError>>()?;
        Ok(Self { model, emotions, vectors })
    }
}
