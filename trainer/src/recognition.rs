//! The recogniser task as the trainer sees it: prompts from a corpus split, and greedy dev
//! evaluation scored strictly (malformed or out-of-set answers are wrong).

use crate::scores::{Report, report};
use selfemo_datasets::{ContextWindow, Corpus, Emotion, Target};
use selfemo_model::{CausalLm, SamplingConfig, TextTokenizer, generate};
use selfemo_rewards::{RewardConfig, parse, score_recognition_group};
use serde::{Deserialize, Serialize};
use selfemo_selfplay::RecogniserPrompt;

/// One recognition prompt, tokenised, with its gold label.
#[derive(Debug, Clone)]
pub struct RecognitionPrompt {
    /// Where it comes from.
    pub target: Target,
    /// Chat-formatted prompt ids, reply prefix included.
    pub ids: Vec<u32>,
    /// The reply prefix (put back in front of the completion before parsing).
    pub reply_prefix: String,
    /// Gold set G = {y_t}.
    pub gold: Emotion,
}

/// Builds the prompts of the given targets within `budget` tokens.
pub fn prompts(
    corpus: &Corpus,
    targets: &[Target],
    template: &RecogniserPrompt,
    context_window: usize,
    budget: usize,
    tok: &TextTokenizer,
) -> Vec<RecognitionPrompt> {
    let labels = corpus.dataset.labels();
    let render = |p: &selfemo_selfplay::FilledPrompt| crate::policy::render(tok, p);
    targets
        .iter()
        .filter_map(|&t| {
            let window = ContextWindow::new(&corpus.dialogues[t.dialogue], t.turn, context_window)?;
            let filled = template.fit(window, labels, budget, &|p| tok.encode(&render(p)).len());
            Some(RecognitionPrompt { target: t, ids: tok.encode(&render(&filled)), reply_prefix: filled.reply_prefix, gold: window.target.label? })
        })
        .collect()
}

/// Greedy answers for `prompts`, scored against gold. Returns the report and each completion;
/// `progress` is told how many prompts each batch finished.
pub fn evaluate(
    model: &CausalLm,
    tok: &TextTokenizer,
    prompts: &[RecognitionPrompt],
    corpus: &Corpus,
    max_new_tokens: usize,
    batch: usize,
    progress: &mut dyn FnMut(usize),
) -> (Report, Vec<String>) {
    let labels = corpus.dataset.labels();
    let mut texts = Vec::with_capacity(prompts.len());
    let mut predictions: Vec<Option<Emotion>> = Vec::with_capacity(prompts.len());
    for chunk in prompts.chunks(batch.max(1)) {
        let ids: Vec<Vec<u32>> = chunk.iter().map(|p| p.ids.clone()).collect();
        let seeds = vec![0; ids.len()];
        let gens = generate(model, &ids, &SamplingConfig::greedy(max_new_tokens), &seeds, &tok.eos_ids, tok.pad_id, None);
        for (p, g) in chunk.iter().zip(gens) {
            let text = format!("{}{}", p.reply_prefix, tok.decode(&g.tokens, true));
            let parsed = parse(&text, labels);
            // Strict: exactly one valid label and nothing invalid counts as a prediction.
            predictions.push(parsed.strict_label());
            texts.push(text);
        }
        progress(chunk.len());
    }
    let gold: Vec<&str> = prompts.iter().map(|p| p.gold.name()).collect();
    let pred: Vec<Option<&str>> = predictions.iter().map(|p| p.map(|e| e.name())).collect();
    let order: Vec<&str> = labels.emotions().map(|e| e.name()).collect();
    (report(&gold, &pred, &order), texts)
}

/// Dev scores and the dev reward of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DevResult {
    /// Accuracy, F1 and the rest.
    pub report: Report,
    /// Mean of w_format · format + w_U · R_U over the greedy dev completions: the reward the
    /// policy is trained on, less group consistency (a single greedy sample has no group).
    pub reward: f64,
}

/// The dev reward of greedy `texts` (one per prompt); see [`DevResult::reward`].
pub fn dev_reward(texts: &[String], prompts: &[RecognitionPrompt], corpus: &Corpus, rewards: &RewardConfig) -> f64 {
    let w = &rewards.weights;
    let total: f64 = texts
        .iter()
        .zip(prompts)
        .map(|(text, p)| {
            let (_, b) = &score_recognition_group(&[text.as_str()], &[p.gold], corpus.dataset.labels(), rewards, None)[0];
            w.format * b.format + w.recognition * b.recognition.unwrap_or(0.0)
        })
        .sum();
    total / texts.len().max(1) as f64
}
