//! Explanation faithfulness (ERV seed): the recogniser answers with a rationale, and the same
//! policy, as judge, names the emotion its rationale describes. EPC: share of rationales whose
//! judged emotion equals the prediction; EEA: share whose judged emotion equals gold.

use selfemo_datasets::Emotion;
use selfemo_rewards::parse;
use selfemo_selfplay::{FilledPrompt, Policy, RecognitionItem, Roles};
use serde::{Deserialize, Serialize};

/// One target's rationale, prediction and judgement.
#[derive(Debug, Clone, PartialEq)]
pub struct FaithAnswer {
    /// Gold label.
    pub gold: Emotion,
    /// The recogniser's answer: exactly one valid label, else `None` (strict).
    pub prediction: Option<Emotion>,
    /// Its `<think>` text (empty when the reply is malformed or the thought is empty).
    pub rationale: String,
    /// The judge's label for the rationale (`None` without a rationale).
    pub judged: Option<Emotion>,
}

/// EPC, EEA and their counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaithReport {
    /// Targets asked.
    pub targets: usize,
    /// Targets with a well-formed reply and a non-empty rationale (EEA's denominator).
    pub rationales: usize,
    /// Of those, with a valid single-label prediction (EPC's denominator).
    pub predicted: usize,
    /// Explanation-prediction consistency: judged = prediction, over `predicted` (`None` when 0).
    pub epc: Option<f64>,
    /// Explanation-emotion accuracy: judged = gold, over `rationales` (`None` when 0).
    pub eea: Option<f64>,
    /// Recognition accuracy of the same answers (strict), over `targets`.
    pub accuracy: f64,
}

/// Answers every item with the policy's generation (the recogniser prompt must open the reply
/// with `<think>`, so the policy writes the rationale), then `roles.judge` judges every
/// rationale in one scoring pass.
pub fn probe(policy: &dyn Policy, roles: &Roles<'_>, items: &[RecognitionItem]) -> Vec<FaithAnswer> {
    let prompts: Vec<FilledPrompt> = items.iter().map(|i| roles.recognition_prompt(policy, i)).collect();
    let replies = policy.generate(&prompts, &vec![vec![0]; items.len()]);
    let mut answers: Vec<FaithAnswer> = items
        .iter()
        .zip(&prompts)
        .zip(replies)
        .map(|((item, p), reply)| {
            let text = format!("{}{}", p.reply_prefix, reply.first().map_or("", |c| c.text.as_str()));
            let parsed = parse(&text, roles.labels);
            let rationale = if parsed.well_formed { parsed.think.trim().to_string() } else { String::new() };
            FaithAnswer { gold: item.gold, prediction: parsed.strict_label(), rationale, judged: None }
        })
        .collect();
    let asked: Vec<usize> = (0..answers.len()).filter(|i| !answers[*i].rationale.is_empty()).collect();
    let texts: Vec<&str> = asked.iter().map(|&i| answers[i].rationale.as_str()).collect();
    let judged: Vec<Option<Emotion>> = roles.judge.scores(policy, &texts, roles.labels).iter().map(|s| roles.best_label(s)).collect();
    for (i, j) in asked.into_iter().zip(judged) {
        answers[i].judged = j;
    }
    answers
}

/// EPC and EEA of a probe's answers.
pub fn report(answers: &[FaithAnswer]) -> FaithReport {
    let with_rationale: Vec<&FaithAnswer> = answers.iter().filter(|a| a.judged.is_some()).collect();
    let predicted: Vec<&&FaithAnswer> = with_rationale.iter().filter(|a| a.prediction.is_some()).collect();
    let share = |n: usize, d: usize| (d > 0).then(|| n as f64 / d as f64);
    FaithReport {
        targets: answers.len(),
        rationales: with_rationale.len(),
        predicted: predicted.len(),
        epc: share(predicted.iter().filter(|a| a.judged == a.prediction).count(), predicted.len()),
        eea: share(with_rationale.iter().filter(|a| a.judged == Some(a.gold)).count(), with_rationale.len()),
        accuracy: share(answers.iter().filter(|a| a.prediction == Some(a.gold)).count(), answers.len()).unwrap_or(0.0),
    }
}
