//! Text ↔ token ids, and the chat template that turns messages into a prompt.
//!
//! For a GGUF the tokenizer is rebuilt from its metadata (byte-level BPE from
//! `tokenizer.ggml.tokens` and `.merges`, the CONTROL tokens as special); for an HF folder it
//! is read from `tokenizer.json`.

use crate::chat_template::ChatTemplate;
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

/// ggml token type of control tokens.
const CONTROL: i64 = 3;

/// A tokenizer plus the model's chat template, its special tokens and the ids that end a turn.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    /// Ids that end a turn (stop generation).
    pub eos_ids: Vec<u32>,
    /// Id used to pad batches (never attended to).
    pub pad_id: u32,
    /// The model's chat template (ChatML when the model has none).
    pub chat_template: ChatTemplate,
    /// The special tokens by role, as the model's files name them.
    pub special: SpecialTokens,
    /// llama.cpp's name for the pre-tokenizer (`tokenizer.ggml.pre`), when known.
    pub gguf_pre: Option<String>,
}

/// The special-token strings transformers keeps in `tokenizer_config.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Beginning of sequence.
    pub bos: Option<String>,
    /// End of sequence (of a turn, for chat models).
    pub eos: Option<String>,
    /// Padding.
    pub pad: Option<String>,
    /// Unknown.
    pub unk: Option<String>,
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
    /// Rebuilds the tokenizer from GGUF metadata (`tokenizer.ggml.model = gpt2`), with the
    /// file's `tokenizer.chat_template`.
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
        let token = |key: &str| id(key).and_then(|i| tokens.get(i as usize).cloned());
        let special = SpecialTokens {
            bos: token("tokenizer.ggml.bos_token_id"),
            eos: token("tokenizer.ggml.eos_token_id"),
            pad: token("tokenizer.ggml.padding_token_id"),
            unk: token("tokenizer.ggml.unknown_token_id"),
        };
        let source = g.metadata.get("tokenizer.chat_template").and_then(Value::as_str);
        let chat_template = Self::template(source, &special).map_err(|e| g.error(format!("tokenizer.chat_template: {e}")))?;
        let eos = id("tokenizer.ggml.eos_token_id");
        let eos_ids = end_of_turn_ids(&inner, eos.into_iter());
        let pad_id = id("tokenizer.ggml.padding_token_id").or(eos).unwrap_or(0);
        let gguf_pre = g.metadata.get("tokenizer.ggml.pre").and_then(Value::as_str).map(str::to_string);
        Ok(Self { inner, eos_ids, pad_id, chat_template, special, gguf_pre })
    }

    /// Loads an HF folder's tokenizer: `tokenizer.json`, with the chat template and special
    /// tokens of `tokenizer_config.json` (or `chat_template.jinja`) when present; `eos_ids`
    /// from the model config.
    pub fn from_hf_dir(dir: &Path, eos_ids: &[u32]) -> Result<Self, LoadError> {
        let path = dir.join("tokenizer.json");
        let inner = Tokenizer::from_file(&path).map_err(|e| LoadError::file(&path, format!("cannot read tokenizer: {e}")))?;
        let config_path = dir.join("tokenizer_config.json");
        let config: HfTokenizerConfig = match std::fs::read_to_string(&config_path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| LoadError::file(&config_path, format!("line {}: {e}", e.line())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HfTokenizerConfig::default(),
            Err(e) => return Err(LoadError::file(&config_path, format!("cannot read: {e}"))),
        };
        let special = SpecialTokens {
            bos: config.bos_token.and_then(TokenString::into_content),
            eos: config.eos_token.and_then(TokenString::into_content),
            pad: config.pad_token.and_then(TokenString::into_content),
            unk: config.unk_token.and_then(TokenString::into_content),
        };
        let jinja_path = dir.join("chat_template.jinja");
        let (source, template_file) = match std::fs::read_to_string(&jinja_path) {
            Ok(text) => (Some(text), jinja_path),
            Err(_) => (config.chat_template.and_then(ChatTemplateField::into_default), config_path),
        };
        let chat_template = Self::template(source.as_deref(), &special).map_err(|e| LoadError::file(&template_file, e))?;
        let eos_ids = end_of_turn_ids(&inner, eos_ids.iter().copied().chain(special.eos.iter().filter_map(|t| inner.token_to_id(t))));
        let pad_id = special.pad.as_deref().and_then(|t| inner.token_to_id(t)).or(eos_ids.first().copied()).unwrap_or(0);
        let gguf_pre = None;
        Ok(Self { inner, eos_ids, pad_id, chat_template, special, gguf_pre })
    }

    /// The model's template, or ChatML when it has none.
    fn template(source: Option<&str>, special: &SpecialTokens) -> Result<ChatTemplate, String> {
        match source {
            Some(source) => ChatTemplate::new(source, special.bos.as_deref().unwrap_or_default(), special.eos.as_deref().unwrap_or_default()),
            None => Ok(ChatTemplate::chatml()),
        }
    }

    /// The serialised `tokenizer.json`.
    pub fn to_json(&self) -> Result<String, String> {
        self.inner.to_string(false).map_err(|e| format!("cannot serialise the tokenizer: {e}"))
    }

    /// The string of a token id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The id of a token string.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Writes `tokenizer.json`.
    pub fn save(&self, path: &Path) -> Result<(), LoadError> {
        let json = self.to_json().map_err(|e| LoadError::file(path, e))?;
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

    /// The prompt of `messages` in the model's chat template, with the assistant's turn opened.
    ///
    /// The template was checked at load on the chat shapes selfemo renders (system + user,
    /// user only), so a failure here is a template that rejects particular content.
    pub fn chat_prompt(&self, messages: &[Message]) -> String {
        self.chat_template.render(messages, true).unwrap_or_else(|e| panic!("the chat template rejected a chat it accepted at load: {e}"))
    }
}

/// The ids that end a turn: the model's own (`declared`, first), then ChatML's `<|im_end|>` and
/// `<|endoftext|>` where the vocabulary has them; each once, in that order.
fn end_of_turn_ids(inner: &Tokenizer, declared: impl Iterator<Item = u32>) -> Vec<u32> {
    let mut ids: Vec<u32> = Vec::new();
    for id in declared.chain(["<|im_end|>", "<|endoftext|>"].iter().filter_map(|t| inner.token_to_id(t))) {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

/// The fields of `tokenizer_config.json` selfemo reads.
#[derive(Debug, Default, serde::Deserialize)]
struct HfTokenizerConfig {
    chat_template: Option<ChatTemplateField>,
    bos_token: Option<TokenString>,
    eos_token: Option<TokenString>,
    pad_token: Option<TokenString>,
    unk_token: Option<TokenString>,
}

/// A special token as transformers writes it: a string or an `AddedToken` object.
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
enum TokenString {
    Plain(String),
    Added { content: String },
    Other(serde::de::IgnoredAny),
}

impl TokenString {
    fn into_content(self) -> Option<String> {
        match self {
            TokenString::Plain(s) | TokenString::Added { content: s } => Some(s),
            TokenString::Other(_) => None,
        }
    }
}

/// `chat_template`: one template, or named ones (the `default` is used).
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
enum ChatTemplateField {
    One(String),
    Named(Vec<NamedTemplate>),
}

#[derive(Debug, serde::Deserialize)]
struct NamedTemplate {
    name: String,
    template: String,
}

impl ChatTemplateField {
    fn into_default(self) -> Option<String> {
        match self {
            ChatTemplateField::One(s) => Some(s),
            ChatTemplateField::Named(list) => list.into_iter().find(|t| t.name == "default").map(|t| t.template),
        }
    }
}
