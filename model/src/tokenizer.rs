//! Text ↔ token ids, and the ChatML chat template.
//!
//! For a GGUF the tokenizer is rebuilt from its metadata (byte-level BPE from
//! `tokenizer.ggml.tokens` and `.merges`, the CONTROL tokens as special); for an HF folder it
//! is read from `tokenizer.json`.

use crate::gguf::{Gguf, Value};
use crate::weights::LoadError;
use std::path::Path;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};

/// SmolLM2's default system prompt, which its chat template adds when none is given.
pub const SMOLLM_SYSTEM: &str = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

/// ggml token type of control tokens.
const CONTROL: i64 = 3;

/// A tokenizer plus the chat template and the ids that end a turn.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    /// Ids that end a turn (stop generation).
    pub eos_ids: Vec<u32>,
    /// Id used to pad batches (never attended to).
    pub pad_id: u32,
    /// System prompt added when a chat has none (SmolLM2's template does this).
    pub default_system: Option<String>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TextTokenizer(vocab {}, eos {:?})", self.inner.get_vocab_size(true), self.eos_ids)
    }
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl Message {
    /// A message with the given role.
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self { role: role.to_string(), content: content.into() }
    }
}

impl TextTokenizer {
    /// Rebuilds the tokenizer from GGUF metadata (`tokenizer.ggml.model = gpt2`).
    pub fn from_gguf(g: &Gguf) -> Result<Self, LoadError> {
        let strings = |key: &str| -> Result<Vec<String>, LoadError> {
            let arr = g.get(key)?.as_array().ok_or_else(|| g.error(format!("{key} is not an array")))?;
            arr.iter().map(|v| v.as_str().map(str::to_string).ok_or_else(|| g.error(format!("{key} holds a non-string")).into())).collect()
        };
        let model = g.get("tokenizer.ggml.model")?.as_str().unwrap_or_default();
        if model != "gpt2" {
            return Err(g.error(format!("tokenizer.ggml.model {model:?} is not supported (gpt2 byte-level BPE)")).into());
        }
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges: Vec<(String, String)> = strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| m.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())).ok_or_else(|| g.error(format!("bad merge {m:?}")).into()))
            .collect::<Result<_, LoadError>>()?;
        let vocab: tokenizers::models::bpe::Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let bpe = BPE::builder().vocab_and_merges(vocab, merges).build().map_err(|e| g.error(format!("cannot build BPE: {e}")))?;
        let mut inner = Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
        ]))));
        inner.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())));
        let types = g.metadata.get("tokenizer.ggml.token_type").and_then(Value::as_array).unwrap_or(&[]);
        let special: Vec<AddedToken> = types
            .iter()
            .enumerate()
            .filter(|(_, t)| matches!(t, Value::Int(CONTROL)))
            .filter_map(|(i, _)| tokens.get(i).map(|t| AddedToken::from(t.clone(), true)))
            .collect();
        inner.add_special_tokens(special).map_err(|e| g.error(format!("cannot add control tokens: {e}")))?;
        let id = |key: &str| g.metadata.get(key).and_then(Value::as_u64).map(|v| v as u32);
        let eos = id("tokenizer.ggml.eos_token_id");
        let mut eos_ids: Vec<u32> = eos.into_iter().collect();
        eos_ids.extend(["<|im_end|>", "<|endoftext|>"].iter().filter_map(|t| inner.token_to_id(t)));
        eos_ids.dedup();
        let pad_id = id("tokenizer.ggml.padding_token_id").or(eos).unwrap_or(0);
        let chatml = inner.token_to_id("<|im_start|>").is_some();
        let default_system = (chatml && g.metadata.get("general.name").and_then(Value::as_str).is_some_and(|n| n.to_lowercase().contains("smollm")))
            .then(|| SMOLLM_SYSTEM.to_string());
        Ok(Self { inner, eos_ids, pad_id, default_system })
    }

    /// Loads `tokenizer.json` (HF folders); `eos_ids` from the model config.
    pub fn from_file(path: &Path, eos_ids: &[u32]) -> Result<Self, LoadError> {
        let inner = Tokenizer::from_file(path).map_err(|e| LoadError::file(path, format!("cannot read tokenizer: {e}")))?;
        let mut eos_ids = eos_ids.to_vec();
        eos_ids.extend(["<|im_end|>", "<|endoftext|>"].iter().filter_map(|t| inner.token_to_id(t)));
        eos_ids.sort_unstable();
        eos_ids.dedup();
        let pad_id = eos_ids.first().copied().unwrap_or(0);
        Ok(Self { inner, eos_ids, pad_id, default_system: None })
    }

    /// Writes `tokenizer.json`.
    pub fn save(&self, path: &Path) -> Result<(), LoadError> {
        let json = self.inner.to_string(true).map_err(|e| LoadError::file(path, format!("cannot serialise tokenizer: {e}")))?;
        crate::weights::write_file(path, json.as_bytes())
    }

    /// Token ids of `text`; special-token strings in it become their ids; nothing is added.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.inner.encode(text, false).map(|e| e.get_ids().to_vec()).unwrap_or_default()
    }

    /// Text of `ids`, special tokens dropped when `skip_special`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> String {
        self.inner.decode(ids, skip_special).unwrap_or_default()
    }

    /// ChatML: `<|im_start|>{role}\n{content}<|im_end|>\n` per message (the default system
    /// prompt first when the chat has none), then `<|im_start|>assistant\n`.
    pub fn chat_prompt(&self, messages: &[Message]) -> String {
        let mut out = String::new();
        if let Some(system) = &self.default_system
            && messages.first().is_none_or(|m| m.role != "system")
        {
            out.push_str(&format!("<|im_start|>system\n{system}<|im_end|>\n"));
        }
        for m in messages {
            out.push_str(&format!("<|im_start|>{}\n{}<|im_end|>\n", m.role, m.content));
        }
        out.push_str("<|im_start|>assistant\n");
        out
    }
}
