//! The expression sweep behind `selfemo steer sweep`: steered greedy replies per emotion and α,
//! their expression consistency (the policy's own score-mode recogniser agrees with e) and their
//! fluency (perplexity of the reply under the unsteered policy).

use crate::label_scoring::{ScoreLimits, ScorePrompt, score_targets};
use selfemo_datasets::{Corpus, Dataset, Dialogue, Split, Target, Utterance};
use selfemo_model::{CausalLm, EmotionVectors, Message, SamplingConfig, TextTokenizer, completion_logprobs, generate};
use serde::Serialize;

/// User turns the replies answer: held out from the extraction queries.
pub const SWEEP_QUERIES: [&str; 12] = [
    "I heard back from the company about the job.",
    "My brother called me last night.",
    "The package finally arrived this afternoon.",
    "Everyone is coming over for dinner on Friday.",
    "They cancelled the concert at the last minute.",
    "I ran into my old teacher at the station.",
    "The doctor wants to see me again next week.",
    "Our team lost the final yesterday.",
    "I have to give a speech at the wedding.",
    "Someone left a note on my car.",
    "The landlord is raising the rent.",
    "We are getting a puppy.",
];

/// One cell of the sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepRow {
    /// Target emotion e.
    pub emotion: String,
    /// α toward e.
    pub alpha: f64,
    /// Share of replies the recogniser labels e.
    pub consistency: f64,
    /// Mean recogniser probability of e among the labels (softmax over the label scores): a
    /// graded reading of the same agreement, which moves even when the argmax does not.
    pub p_emotion: f64,
    /// exp of the mean negative log-prob of the reply tokens under the unsteered policy.
    pub perplexity: f64,
    /// The first reply, for reading.
    pub example: String,
}

/// An emotion the sweep cannot steer toward (not a label, or without a vector).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SweepError(pub String);

/// Runs the sweep: for every emotion (a label of MELD's set) and α, greedy replies to
/// `queries` with Σ = α·EV_e added, then recognition and perplexity.
pub fn sweep(
    model: &CausalLm,
    tok: &TextTokenizer,
    vectors: &EmotionVectors,
    emotions: &[String],
    alphas: &[f64],
    queries: &[&str],
    max_new_tokens: usize,
) -> Result<Vec<SweepRow>, SweepError> {
    let device = model.model.embed_tokens.weight.device();
    let labels = Dataset::Meld.labels();
    let prompts: Vec<Vec<u32>> = queries.iter().map(|q| tok.encode(&tok.chat_prompt(&[Message::new("user", *q)]))).collect();
    let seeds = vec![0; prompts.len()];
    let mut rows = Vec::new();
    for e in emotions {
        let gold = labels.parse(e).ok_or_else(|| SweepError(format!("{e:?} is not a MELD label ({})", labels.joined())))?;
        for &alpha in alphas {
            let steer = vectors.mix(&[(e.clone(), alpha)], &device).map_err(SweepError)?;
            let replies = generate(model, &prompts, &SamplingConfig::greedy(max_new_tokens), &seeds, &tok.eos_ids, tok.pad_id, Some(&steer));
            let texts: Vec<String> = replies.iter().map(|g| tok.decode(&g.tokens, true).trim().to_string()).collect();
            // 1. recognition: each (query, reply) is a two-turn dialogue whose reply is the target
            let dialogues = queries
                .iter()
                .zip(&texts)
                .enumerate()
                .map(|(i, (q, r))| Dialogue {
                    id: i.to_string(),
                    split: Split::Test,
                    utterances: vec![
                        Utterance { speaker: "A".into(), text: q.to_string(), label: None },
                        Utterance { speaker: "B".into(), text: r.clone(), label: Some(gold) },
                    ],
                })
                .collect();
            let corpus = Corpus { dataset: Dataset::Meld, dialogues };
            let targets: Vec<Target> = (0..queries.len()).map(|d| Target { dialogue: d, turn: 1 }).collect();
            let scores =
                score_targets(model, tok, &ScorePrompt::default(), &corpus, &targets, ScoreLimits { window: 1.into(), budget: 512, rows: 16 }, &mut |_| ());
            let index = labels.emotions().position(|x| x == gold);
            let agree = scores.iter().filter(|s| argmax(s) == index).count();
            let p_emotion = scores.iter().map(|s| label_probability(s, index.unwrap_or(0))).sum::<f64>() / scores.len().max(1) as f64;
            // 2. fluency under the unsteered policy
            let tokens: Vec<Vec<u32>> = replies.iter().map(|g| g.tokens.clone()).collect();
            let lp = completion_logprobs(model, &prompts, &tokens, tok.pad_id, 1.0)
                .try_to_vec_as::<f32>()
                .map_err(|e| SweepError(format!("reading log-probs: {e:?}")))?;
            let nll = -lp.iter().map(|x| *x as f64).sum::<f64>() / lp.len().max(1) as f64;
            rows.push(SweepRow {
                emotion: e.clone(),
                alpha,
                consistency: agree as f64 / queries.len() as f64,
                p_emotion,
                perplexity: nll.exp(),
                example: texts[0].clone(),
            });
        }
    }
    Ok(rows)
}

/// softmax over the label log-probs, at label `k`.
fn label_probability(scores: &[f64], k: usize) -> f64 {
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let total: f64 = scores.iter().map(|s| (s - max).exp()).sum();
    (scores[k] - max).exp() / total
}

fn argmax(scores: &[f64]) -> Option<usize> {
    scores.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i)
}
