//! Self-written rationales for the warm start (EmoPrompt / STaR style): the policy explains a
//! given gold label, then re-predicts the label without it from its own explanation; only
//! rationales whose label-free re-prediction is the gold label are kept for SFT. A rationale
//! that names an emotion (a label of the set or a synonym) is rejected before that check: its
//! re-prediction would be reading, not inference, and SFT on it would teach the label word.

use crate::items::RecognitionItem;
use crate::policy::{Policy, sample_seed};
use crate::rollout::Roles;
use selfemo_datasets::Emotion;
use serde::Serialize;

/// One rationale and its check.
#[derive(Debug, Clone, PartialEq)]
pub struct Rationale {
    /// The recognition item it explains.
    pub item: RecognitionItem,
    /// The explanation (the `<think>` text), one line.
    pub text: String,
    /// The label the recogniser gives after reading `text` in its own reply, without the hint.
    pub repredicted: Option<Emotion>,
    /// Whether `text` names an emotion of the label set (a label or a synonym, whole words).
    pub names_emotion: bool,
}

/// Why a rationale was kept or rejected, in the order the checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Trained on: it explains without naming, and the label-free re-prediction is the gold label.
    Kept,
    /// No explanation was written.
    Empty,
    /// It names a label or a synonym: the gold label leaked into it.
    NamesEmotion,
    /// The label-free re-prediction is not the gold label.
    Disagrees,
}

impl Rationale {
    /// The checks' outcome.
    pub fn verdict(&self) -> Verdict {
        if self.text.is_empty() {
            Verdict::Empty
        } else if self.names_emotion {
            Verdict::NamesEmotion
        } else if self.repredicted != Some(self.item.gold) {
            Verdict::Disagrees
        } else {
            Verdict::Kept
        }
    }

    /// Whether the warm start trains on it.
    pub fn kept(&self) -> bool {
        self.verdict() == Verdict::Kept
    }

    /// The SFT completion after a recogniser prompt that ends with `<think>`.
    pub fn completion(&self) -> String {
        format!("{}</think><answer>{}</answer>", self.text, self.item.gold)
    }
}

/// The rationale text of a completion: up to `</think>`, first line, trimmed.
fn explanation(completion: &str) -> String {
    let before = completion.split("</think>").next().unwrap_or("");
    before.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("").to_string()
}

/// For each item, one sampled rationale written with `hint` (its `{emotion}` filled with the
/// gold label) appended to the recogniser's user message and the reply opened with `<think>`;
/// then, in one scoring pass, the label-free re-prediction after `<think>{rationale}</think><answer>`.
pub fn rationales(policy: &dyn Policy, roles: &Roles<'_>, items: &[RecognitionItem], hint: &str, seed: u64) -> Vec<Rationale> {
    let prompts: Vec<_> = items
        .iter()
        .map(|item| {
            let mut p = roles.recognition_prompt(policy, item);
            p.user.push_str(&hint.replace("{emotion}", item.gold.name()));
            p.reply_prefix = "<think>".into();
            p
        })
        .collect();
    let seeds: Vec<Vec<u64>> = items.iter().map(|i| vec![sample_seed(seed, u64::MAX, i.id, 0)]).collect();
    let texts: Vec<String> = policy.generate(&prompts, &seeds).into_iter().map(|c| c.first().map_or(String::new(), |c| explanation(&c.text))).collect();
    let checks: Vec<_> = items
        .iter()
        .zip(&texts)
        .map(|(item, text)| {
            let mut p = roles.recognition_prompt(policy, item);
            p.reply_prefix = format!("<think>{text}</think><answer>");
            p
        })
        .collect();
    let names: Vec<&str> = roles.labels.emotions().map(|e| e.name()).collect();
    let scores = policy.score(&checks, &names);
    items
        .iter()
        .zip(texts)
        .zip(scores)
        .map(|((item, text), s)| {
            let names_emotion = roles.labels.mention_in(&text).is_some();
            Rationale { item: item.clone(), text, repredicted: roles.best_label(&s), names_emotion }
        })
        .collect()
}
