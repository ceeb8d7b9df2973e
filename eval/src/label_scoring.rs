//! Score-mode recognition: one forward pass per target, the prediction is the label whose
//! tokens after `<answer>` have the highest log-probability (no generation, no parsing).
//!
//! The prompt is laid out so that target t's prompt extends the dialogue prefix
//! `header · line_s · … · line_t`: a dialogue's lines run through the model once, and each
//! target branches off the shared KV cache with its question and candidate labels. Targets
//! whose context window starts at the same line share one prefix; a window that slides (a
//! dialogue longer than the window, or over the token budget) starts a new one.

use selfemo_datasets::{ContextSpan, Corpus, Target};
use selfemo_model::label_scores::{HeaderCache, ScoreQuery, TokenLayout, score_dialogue};
use selfemo_model::{CausalLm, Message, TextTokenizer};
use serde::{Deserialize, Serialize};

/// Score-mode templates. `{labels}` and `{speaker}` are filled in; the conversation's lines
/// (`speaker: text`, one per line) go between the user message's start and `question`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScorePrompt {
    /// System message.
    pub system: String,
    /// User text before the lines.
    pub preamble: String,
    /// User text after the lines (per target).
    pub question: String,
    /// Start of the assistant reply; the labels are scored right after it.
    pub answer_prefix: String,
}

impl Default for ScorePrompt {
    fn default() -> Self {
        Self {
            system: "You recognise emotions in conversations. Name the emotion expressed in the last line of the conversation, as <answer>label</answer> with one of these labels: {labels}.".into(),
            preamble: "Conversation:\n".into(),
            question: "".into(),
            answer_prefix: "<answer>".into(),
        }
    }
}

/// Tokenises `dialogue` under `prompt` and plans a query per target turn: the window shows the
/// past turns `window` does (a number is a sliding window of that many), dropping the oldest
/// while the prompt plus the longest label exceeds `budget` tokens (never the target).
pub fn layout(
    tok: &TextTokenizer,
    prompt: &ScorePrompt,
    corpus: &Corpus,
    dialogue: usize,
    turns: &[usize],
    window: impl Into<ContextSpan>,
    budget: usize,
) -> (TokenLayout, Vec<ScoreQuery>) {
    let window = window.into();
    let labels = corpus.dataset.labels();
    let d = &corpus.dialogues[dialogue];
    const CUT: &str = "\u{1}";
    let system = prompt.system.replace("{labels}", &labels.joined());
    let chat = |speaker: &str| {
        let user = format!("{}{CUT}{}", prompt.preamble, prompt.question.replace("{speaker}", speaker).replace("{labels}", &labels.joined()));
        tok.chat_prompt(&[Message::new("system", &system), Message::new("user", user)]) + &prompt.answer_prefix
    };
    let header_text = chat("").split(CUT).next().unwrap_or_default().to_string();
    let header = tok.encode(&header_text);
    let lines: Vec<Vec<u32>> = d.utterances.iter().map(|u| tok.encode(&format!("{}: {}\n", u.speaker, u.text))).collect();
    let label_ids: Vec<Vec<u32>> = labels.emotions().map(|e| tok.encode(e.name())).collect();
    let longest = label_ids.iter().map(Vec::len).max().unwrap_or(0);
    let queries = turns
        .iter()
        .map(|&t| {
            let full = chat(&d.utterances[t].speaker);
            let suffix = tok.encode(full.split(CUT).nth(1).unwrap_or_default());
            let mut start = window.start(t);
            let size = |s: usize| header.len() + lines[s..=t].iter().map(Vec::len).sum::<usize>() + suffix.len() + longest;
            while start < t && size(start) > budget {
                start += 1;
            }
            ScoreQuery { turn: t, start, suffix }
        })
        .collect();
    (TokenLayout { header, lines, labels: label_ids }, queries)
}

/// How far a scored target's prompt reaches and how many queries run per pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScoreLimits {
    /// Past turns shown with the target.
    pub window: ContextSpan,
    /// Prompt token budget (the oldest turns are dropped to fit).
    pub budget: usize,
    /// Queries per tree-masked pass.
    pub rows: usize,
}

/// Scores `targets` (any order) of `corpus`: per target, the label log-probs in label-set
/// order. `progress` is called with the number of targets just finished.
pub fn score_targets(
    model: &CausalLm,
    tok: &TextTokenizer,
    prompt: &ScorePrompt,
    corpus: &Corpus,
    targets: &[Target],
    limits: ScoreLimits,
    progress: &mut dyn FnMut(usize),
) -> Vec<Vec<f64>> {
    let ScoreLimits { window, budget, rows } = limits;
    let mut out = vec![Vec::new(); targets.len()];
    let mut order: Vec<usize> = (0..targets.len()).collect();
    order.sort_by_key(|&i| (targets[i].dialogue, targets[i].turn));
    let mut headers = HeaderCache::default();
    for same in order.chunk_by(|a, b| targets[*a].dialogue == targets[*b].dialogue) {
        let turns: Vec<usize> = same.iter().map(|&i| targets[i].turn).collect();
        let (layout, queries) = layout(tok, prompt, corpus, targets[same[0]].dialogue, &turns, window, budget);
        let cache = headers.get(model, &layout.header);
        for (&i, s) in same.iter().zip(score_dialogue(model, &layout, &queries, cache, rows)) {
            out[i] = s;
        }
        progress(same.len());
    }
    out
}
