//! Self-play rollouts: G recogniser samples per recognition item, and G responder samples per
//! expression item with the re-recognition of each generated turn, each role in one batched
//! pass, every sample scored with its reward breakdown.

use crate::items::{ExpressionItem, RecognitionItem};
use crate::judge::{JudgePrompt, PolicyVerifier};
use crate::policy::{Completion, Policy, sample_seed};
use crate::prompts::{FilledPrompt, RecogniserPrompt, ResponderPrompt};
use selfemo_datasets::{ContextWindow, Emotion, LabelSet, Mention, Utterance};
use selfemo_rewards::explanation::Verifier;
use selfemo_rewards::{Parsed, RewardBreakdown, RewardConfig, parse, score_expression, score_recognition_group};

/// The roles' templates and what fills them.
#[derive(Debug, Clone, Copy)]
pub struct Roles<'a> {
    /// Recogniser templates.
    pub recogniser: &'a RecogniserPrompt,
    /// Responder templates.
    pub responder: &'a ResponderPrompt,
    /// Reply prefix of the re-recogniser, ending where the label goes (it is scored, not sampled).
    pub rerecognition_prefix: &'a str,
    /// The judge of rationale sentences (the explanation reward's verifier, when w_x > 0).
    pub judge: &'a JudgePrompt,
    /// The dataset's label set L.
    pub labels: &'a LabelSet,
    /// Reward definition.
    pub rewards: &'a RewardConfig,
    /// Prompt budget in tokens; the oldest context turns are dropped to fit.
    pub max_prompt_tokens: usize,
}

impl Roles<'_> {
    /// The recogniser prompt of an item, fitted to the budget.
    pub fn recognition_prompt(&self, policy: &dyn Policy, item: &RecognitionItem) -> FilledPrompt {
        self.recogniser.fit(item.window(), self.labels, self.max_prompt_tokens, &|p| policy.prompt_len(p))
    }

    /// The responder prompt of an item, fitted to the budget.
    pub fn expression_prompt(&self, policy: &dyn Policy, item: &ExpressionItem) -> FilledPrompt {
        self.responder.fit(&item.turns, &item.speaker, item.emotion, self.labels, self.max_prompt_tokens, &|p| policy.prompt_len(p))
    }

    /// The label with the highest score (`scores` in label-set order; ties: the first).
    pub fn best_label(&self, scores: &[f64]) -> Option<Emotion> {
        self.labels.argmax(scores)
    }

    /// The re-recogniser prompt: the recogniser reads `turn`, said by `speaker` after `turns`.
    pub fn rerecognition_prompt(&self, policy: &dyn Policy, turns: &[Utterance], speaker: &str, turn: &str) -> FilledPrompt {
        let target = Utterance { speaker: speaker.into(), text: turn.into(), label: None };
        let window = ContextWindow { context: turns, target: &target, turn: turns.len() };
        let mut p = self.recogniser.fit(window, self.labels, self.max_prompt_tokens, &|p| policy.prompt_len(p));
        p.reply_prefix = self.rerecognition_prefix.to_string();
        p
    }
}

/// One recogniser sample and its reward.
#[derive(Debug, Clone, PartialEq)]
pub struct RecognitionSample {
    /// The sampled completion.
    pub completion: Completion,
    /// Reply prefix + completion: what is parsed.
    pub reply: String,
    /// The prediction P (empty when malformed).
    pub prediction: Vec<Emotion>,
    /// format, R_U, C_i and the total.
    pub reward: RewardBreakdown,
}

/// An item's recogniser group.
#[derive(Debug, Clone, PartialEq)]
pub struct RecognitionGroup {
    /// The item.
    pub item: RecognitionItem,
    /// Its filled prompt.
    pub prompt: FilledPrompt,
    /// The G samples.
    pub samples: Vec<RecognitionSample>,
}

/// One responder sample, its re-recognition and its reward.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpressionSample {
    /// The sampled completion.
    pub completion: Completion,
    /// The generated turn r ([`turn_of`]); empty when the policy wrote nothing usable.
    pub turn: String,
    /// Q: the recogniser's label for r in context (score mode), `None` for an empty turn.
    pub rerecognised: Option<Emotion>,
    /// format (a finished, non-empty turn), R_E = IoU_s(Q, {e*}) and the total.
    pub reward: RewardBreakdown,
    /// How r names an emotion of the label set, if it does: a label gets R_E = 0 and is never
    /// kept; a synonym is only counted (`responder/names_emotion`).
    pub mention: Option<Mention>,
}

/// An item's responder group.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpressionGroup {
    /// The item.
    pub item: ExpressionItem,
    /// Its filled prompt.
    pub prompt: FilledPrompt,
    /// The G samples.
    pub samples: Vec<ExpressionSample>,
}

impl ExpressionGroup {
    /// Mean R_E of the group: how well its re-recognitions agree with e*.
    pub fn mean_expression(&self) -> f64 {
        self.samples.iter().map(|s| s.reward.expression.unwrap_or(0.0)).sum::<f64>() / self.samples.len().max(1) as f64
    }
}

/// Seeds of `g` samples of each item id at `step`.
fn seeds(ids: impl Iterator<Item = u64>, g: usize, seed: u64, step: u64) -> Vec<Vec<u64>> {
    ids.map(|id| (0..g as u64).map(|j| sample_seed(seed, step, id, j)).collect()).collect()
}

/// G recogniser samples per item (one batched generation), scored against the item's gold;
/// with w_x > 0 every sentence of their rationales is judged first (one scoring pass), for the
/// explanation reward.
pub fn recognise(policy: &dyn Policy, roles: &Roles<'_>, items: &[RecognitionItem], g: usize, seed: u64, step: u64) -> Vec<RecognitionGroup> {
    let prompts: Vec<FilledPrompt> = items.iter().map(|i| roles.recognition_prompt(policy, i)).collect();
    let generated = policy.generate(&prompts, &seeds(items.iter().map(|i| i.id), g, seed, step));
    let verifier = (roles.rewards.weights.explanation > 0.0).then(|| {
        let thinks: Vec<String> =
            prompts.iter().zip(&generated).flat_map(|(p, cs)| cs.iter().map(|c| parse(&format!("{}{}", p.reply_prefix, c.text), roles.labels).think)).collect();
        PolicyVerifier::judge(policy, roles.judge, roles.labels, &thinks.iter().map(String::as_str).collect::<Vec<_>>())
    });
    let verifier = verifier.as_ref().map(|v| v as &dyn Verifier);
    items
        .iter()
        .zip(prompts)
        .zip(generated)
        .map(|((item, prompt), completions)| {
            let replies: Vec<String> = completions.iter().map(|c| format!("{}{}", prompt.reply_prefix, c.text)).collect();
            let refs: Vec<&str> = replies.iter().map(String::as_str).collect();
            let scored = score_recognition_group(&refs, &[item.gold], roles.labels, roles.rewards, verifier);
            let samples = completions
                .into_iter()
                .zip(replies)
                .zip(scored)
                .map(|((completion, reply), (parsed, reward))| RecognitionSample { completion, reply, prediction: parsed.labels, reward })
                .collect();
            RecognitionGroup { item: item.clone(), prompt, samples }
        })
        .collect()
}

/// The turn a responder completion writes: its first non-empty line, trimmed, without a
/// leading `speaker:` the policy may have echoed, and without surrounding quotes.
pub fn turn_of(completion: &str, speaker: &str) -> String {
    let line = completion.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    let line = line.strip_prefix(&format!("{speaker}:")).unwrap_or(line).trim();
    line.trim_matches(|c| c == '"' || c == '\u{201c}' || c == '\u{201d}').trim().to_string()
}

/// G responder samples per item by `policy` (one batched generation; sample j steered toward
/// e* with α = `alphas[j mod len]` when `alphas` is not empty), then `rerecogniser`'s
/// re-recognition of every non-empty turn (one batched scoring pass; the policy itself, or a
/// frozen copy), each scored against the item's e*.
#[allow(clippy::too_many_arguments)]
pub fn respond(
    policy: &dyn Policy,
    rerecogniser: &dyn Policy,
    roles: &Roles<'_>,
    items: &[ExpressionItem],
    g: usize,
    seed: u64,
    step: u64,
    alphas: &[f64],
) -> Vec<ExpressionGroup> {
    let prompts: Vec<FilledPrompt> = items.iter().map(|i| roles.expression_prompt(policy, i)).collect();
    let seeds = seeds(items.iter().map(|i| i.id), g, seed, step);
    let generated = if alphas.is_empty() {
        policy.generate(&prompts, &seeds)
    } else {
        let toward: Vec<Vec<(Emotion, f64)>> = items.iter().map(|i| (0..g).map(|j| (i.emotion, alphas[j % alphas.len()])).collect()).collect();
        policy.generate_toward(&prompts, &seeds, &toward)
    };
    let turns: Vec<Vec<String>> = items.iter().zip(&generated).map(|(item, cs)| cs.iter().map(|c| turn_of(&c.text, &item.speaker)).collect()).collect();
    // One scoring pass over every non-empty turn.
    let mut asked = Vec::new();
    let mut prompts_q = Vec::new();
    for (i, (item, ts)) in items.iter().zip(&turns).enumerate() {
        for (j, t) in ts.iter().enumerate().filter(|(_, t)| !t.is_empty()) {
            asked.push((i, j));
            prompts_q.push(roles.rerecognition_prompt(policy, &item.turns, &item.speaker, t));
        }
    }
    let names: Vec<&str> = roles.labels.emotions().map(|e| e.name()).collect();
    let mut q: Vec<Vec<Option<Emotion>>> = turns.iter().map(|ts| vec![None; ts.len()]).collect();
    for ((i, j), scores) in asked.into_iter().zip(rerecogniser.score(&prompts_q, &names)) {
        q[i][j] = roles.best_label(&scores);
    }
    items
        .iter()
        .zip(prompts)
        .zip(generated)
        .zip(turns.into_iter().zip(q))
        .map(|(((item, prompt), completions), (ts, qs))| {
            let samples = completions
                .into_iter()
                .zip(ts)
                .zip(qs)
                .map(|((completion, turn), rerecognised)| {
                    let parsed = Parsed {
                        well_formed: rerecognised.is_some(),
                        think: String::new(),
                        answer: rerecognised.map_or(String::new(), |e| e.name().to_string()),
                        labels: rerecognised.into_iter().collect(),
                        invalid: Vec::new(),
                    };
                    let format_ok = !turn.is_empty() && !completion.truncated;
                    let reward = score_expression(&turn, format_ok, &parsed, item.emotion, roles.labels, roles.rewards);
                    let mention = roles.labels.mention_in(&turn);
                    ExpressionSample { completion, turn, rerecognised, reward, mention }
                })
                .collect();
            ExpressionGroup { item: item.clone(), prompt, samples }
        })
        .collect()
}
