//! The recogniser task as the trainer sees it: prompts from a corpus split, and greedy dev
//! evaluation scored strictly (malformed or out-of-set answers are wrong).

use crate::predictions::{Prediction, report_of};
use crate::scores::Report;
use selfemo_datasets::{ContextSpan, ContextWindow, Corpus, Emotion, LabelSet, Target};
use selfemo_model::label_scores::score_prompts;
use selfemo_model::{CausalLm, SamplingConfig, TextTokenizer, generate};
use selfemo_rewards::{RewardConfig, parse, score_recognition_group};
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

/// Builds the prompts of the given targets, each with the past turns `span` shows (a number is
/// a sliding window of that many), within `budget` tokens.
pub fn prompts(
    corpus: &Corpus,
    targets: &[Target],
    template: &RecogniserPrompt,
    span: impl Into<ContextSpan>,
    budget: usize,
    tok: &TextTokenizer,
) -> Vec<RecognitionPrompt> {
    let (labels, span) = (corpus.dataset.labels(), span.into());
    let render = |p: &selfemo_selfplay::FilledPrompt| crate::policy::render(tok, p);
    targets
        .iter()
        .filter_map(|&t| {
            let window = ContextWindow::new(&corpus.dialogues[t.dialogue], t.turn, span)?;
            let filled = template.fit(window, labels, budget, &|p| tok.encode(&render(p)).len());
            Some(RecognitionPrompt { target: t, ids: tok.encode(&render(&filled)), reply_prefix: filled.reply_prefix, gold: window.target.label? })
        })
        .collect()
}

/// Greedy answers for `prompts`, parsed strictly (exactly one valid label and nothing invalid
/// counts as a prediction). Returns the report and each target's prediction with its reply;
/// `progress` is told how many prompts each batch finished.
pub fn evaluate(
    model: &CausalLm,
    tok: &TextTokenizer,
    prompts: &[RecognitionPrompt],
    corpus: &Corpus,
    max_new_tokens: usize,
    batch: usize,
    progress: &mut dyn FnMut(usize),
) -> (Report, Vec<Prediction>) {
    let labels = corpus.dataset.labels();
    let mut predictions = Vec::with_capacity(prompts.len());
    for chunk in prompts.chunks(batch.max(1)) {
        let ids: Vec<Vec<u32>> = chunk.iter().map(|p| p.ids.clone()).collect();
        let seeds = vec![0; ids.len()];
        let gens = generate(model, &ids, &SamplingConfig::greedy(max_new_tokens), &seeds, &tok.eos_ids, tok.pad_id, None);
        for (p, g) in chunk.iter().zip(gens) {
            let text = format!("{}{}", p.reply_prefix, tok.decode(&g.tokens, true));
            let predicted = parse(&text, labels).strict_label();
            predictions.push(Prediction { target: p.target, gold: p.gold, predicted, completion: Some(text), label_logprobs: None });
        }
        progress(chunk.len());
    }
    (report_of(&predictions, labels), predictions)
}

/// Score mode on exactly the prompts a run trains with: log π(label | prompt) of every label of
/// the set after each prompt (its reply prefix must end where the label goes), `[prompt][label]`.
/// Each chunk of prompts runs its common prefix once and up to `rows` prompts at a time branch
/// off it, with every label, in one tree pass; `progress` is told how many prompts each chunk finished.
pub fn label_scores(
    model: &CausalLm,
    tok: &TextTokenizer,
    prompts: &[RecognitionPrompt],
    labels: &LabelSet,
    rows: usize,
    progress: &mut dyn FnMut(usize),
) -> Vec<Vec<f64>> {
    let label_ids: Vec<Vec<u32>> = labels.emotions().map(|e| tok.encode(e.name())).collect();
    let mut out = Vec::with_capacity(prompts.len());
    for chunk in prompts.chunks(SCORE_CHUNK) {
        let ids: Vec<Vec<u32>> = chunk.iter().map(|p| p.ids.clone()).collect();
        out.extend(score_prompts(model, &ids, &label_ids, rows));
        progress(chunk.len());
    }
    out
}

/// Prompts whose common prefix [`label_scores`] runs once.
const SCORE_CHUNK: usize = 64;

/// Score-mode predictions: each prompt's argmax label (never invalid), with the label log-probs.
pub fn score_predictions(prompts: &[RecognitionPrompt], scores: Vec<Vec<f64>>, labels: &LabelSet) -> Vec<Prediction> {
    prompts
        .iter()
        .zip(scores)
        .map(|(p, s)| Prediction { target: p.target, gold: p.gold, predicted: labels.argmax(&s), completion: None, label_logprobs: Some(s) })
        .collect()
}

/// The dev reward of greedy predictions (their replies, one per prompt): the mean of
/// w_format · format + w_U · R_U, the reward the policy is trained on less group consistency.
pub fn dev_reward(predictions: &[Prediction], corpus: &Corpus, rewards: &RewardConfig) -> f64 {
    let w = &rewards.weights;
    let total: f64 = predictions
        .iter()
        .map(|p| {
            let text = p.completion.as_deref().unwrap_or_default();
            let (_, b) = &score_recognition_group(&[text], &[p.gold], corpus.dataset.labels(), rewards, None)[0];
            w.format * b.format + w.recognition * b.recognition.unwrap_or(0.0)
        })
        .sum();
    total / predictions.len().max(1) as f64
}
