//! The policy as judge: it reads a text (a rationale, or one sentence of one) and names the
//! emotion it describes, in score mode. The faithfulness probe judges whole rationales with it;
//! as a [`Verifier`] it gives the ERV explanation reward its per-sentence label probabilities.

use crate::policy::Policy;
use crate::prompts::FilledPrompt;
use selfemo_datasets::{Emotion, LabelSet};
use selfemo_rewards::explanation::{Verifier, sentences};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The judge's templates: `{labels}` and `{rationale}` are filled in; the label is scored right
/// after `reply_prefix`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JudgePrompt {
    /// System message.
    pub system: String,
    /// User message.
    pub user: String,
    /// Start of the reply; the label follows it.
    pub reply_prefix: String,
}

impl Default for JudgePrompt {
    fn default() -> Self {
        Self {
            system: "You read explanations of how someone feels. Name the emotion an explanation describes, using only these labels: {labels}.".into(),
            user: "Explanation: {rationale}\n\nWhich emotion does this explanation describe?".into(),
            reply_prefix: "<answer>".into(),
        }
    }
}

impl JudgePrompt {
    /// The judge prompt for one text.
    pub fn fill(&self, text: &str, labels: &LabelSet) -> FilledPrompt {
        let fill = |t: &str| t.replace("{labels}", &labels.joined()).replace("{rationale}", text);
        FilledPrompt { system: fill(&self.system), user: fill(&self.user), reply_prefix: self.reply_prefix.clone() }
    }

    /// log π(label | judge prompt of text) for every text and label of the set, in one
    /// scoring pass: `[text][label]` in label-set order.
    pub fn scores(&self, policy: &dyn Policy, texts: &[&str], labels: &LabelSet) -> Vec<Vec<f64>> {
        let prompts: Vec<FilledPrompt> = texts.iter().map(|t| self.fill(t, labels)).collect();
        let names: Vec<&str> = labels.emotions().map(|e| e.name()).collect();
        policy.score(&prompts, &names)
    }
}

/// The judge's verdicts on every sentence of some think texts, as an ERV [`Verifier`]: each
/// sentence's label probabilities are the judge's label log-probs, softmax-normalised over the
/// label set. Sentences it was not built with get no probabilities (an empty label set).
pub struct PolicyVerifier {
    probabilities: BTreeMap<String, Vec<(Emotion, f64)>>,
}

impl PolicyVerifier {
    /// Judges every distinct sentence of `think_texts` in one scoring pass.
    pub fn judge(policy: &dyn Policy, judge: &JudgePrompt, labels: &LabelSet, think_texts: &[&str]) -> Self {
        let mut distinct: Vec<&str> = think_texts.iter().flat_map(|t| sentences(t)).collect();
        distinct.sort_unstable();
        distinct.dedup();
        let scores = if distinct.is_empty() { Vec::new() } else { judge.scores(policy, &distinct, labels) };
        let probabilities = distinct.into_iter().zip(scores).map(|(s, lp)| (s.to_string(), softmax(labels, &lp))).collect();
        Self { probabilities }
    }
}

impl Verifier for PolicyVerifier {
    fn probabilities(&self, sentence: &str) -> Vec<(Emotion, f64)> {
        self.probabilities.get(sentence).cloned().unwrap_or_default()
    }
}

/// Label log-probs (label-set order) as probabilities that sum to 1.
fn softmax(labels: &LabelSet, logprobs: &[f64]) -> Vec<(Emotion, f64)> {
    let max = logprobs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = logprobs.iter().map(|x| (x - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    labels.emotions().zip(exp).map(|(e, x)| (e, x / sum)).collect()
}
