//! Self-play as the trainer runs it: which items a step uses, both roles' rollouts as GRPO
//! groups, per-role metrics, and the iteration bookkeeping (steps per iteration, summaries).

use crate::evaluation::DevResult;
use crate::grpo::{Group, Sample};
use selfemo_datasets::{Corpus, Target};
use selfemo_rewards::advantage::mean_std;
use selfemo_selfplay::{EmotionDraw, ExpressionGroup, ExpressionItem, FilterCounts, RecognitionGroup, RecognitionItem, SelfPlayConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Ids of expression items start here (real recognition items are numbered from 0).
pub const EXPRESSION_IDS: u64 = 1 << 40;
/// Ids of synthetic recognition items start here; iteration k's are offset by k << 24.
pub const SYNTHETIC_IDS: u64 = 1 << 41;

/// What one step rolls out.
#[derive(Debug, Clone)]
pub struct StepItems {
    /// Recogniser items: synthetic turns first (up to the configured share), then real ones.
    pub recognition: Vec<RecognitionItem>,
    /// Responder items: the first real targets of the step.
    pub expression: Vec<ExpressionItem>,
}

/// The items of step `step`, the `iteration_step`-th (from 0) of its iteration:
/// `prompts_per_step` recognition items, of which up to `synthetic_share` (rounded) come from
/// `synthetic`, each turn once per iteration (step j takes the next unused ones; once they run
/// out, real prompts fill the step), the rest from `real` (cycled by the step's position); and
/// the responder items answering the step's first real targets, their e* from `draw`.
#[allow(clippy::too_many_arguments)]
pub fn step_items(
    step: u64,
    iteration_step: u64,
    prompts_per_step: usize,
    real: &[(Target, RecognitionItem)],
    synthetic: &[RecognitionItem],
    config: &SelfPlayConfig,
    corpus: &Corpus,
    context_window: usize,
    seed: u64,
    draw: &EmotionDraw,
) -> StepItems {
    let step = step as usize;
    let per_step = (config.synthetic_share * prompts_per_step as f64).round() as usize;
    let first = (iteration_step as usize).saturating_mul(per_step).min(synthetic.len());
    let mut recognition: Vec<RecognitionItem> = synthetic[first..(first + per_step).min(synthetic.len())].to_vec();
    let n_syn = recognition.len();
    let real_at = |j: usize| (step * prompts_per_step + j) % real.len();
    recognition.extend((0..prompts_per_step - n_syn).map(|j| real[real_at(j)].1.clone()));
    let expression = (0..config.responder_prompts_per_step)
        .filter_map(|j| {
            let k = real_at(j);
            ExpressionItem::from_target(corpus, real[k].0, context_window, EXPRESSION_IDS + k as u64, seed, draw)
        })
        .collect();
    StepItems { recognition, expression }
}

/// Both roles' groups as GRPO groups (recogniser groups first), rewards r_i = the totals.
pub fn to_groups(recognition: &[RecognitionGroup], expression: &[ExpressionGroup]) -> Vec<Group> {
    let group = |id: u64, samples: Vec<(&selfemo_selfplay::Completion, f64, f64)>| Group {
        prompt_id: id as usize,
        prompt: samples.first().map(|(c, _, _)| c.prompt.clone()).unwrap_or_default(),
        samples: samples
            .into_iter()
            .map(|(c, reward, consistency)| Sample {
                completion: c.tokens.clone(),
                old_logprobs: c.logprobs.clone(),
                behaviour_logprobs: c.behaviour_logprobs.clone(),
                entropies: c.entropies.clone(),
                truncated: c.truncated,
                reward,
                consistency,
            })
            .collect(),
    };
    let rec =
        recognition.iter().map(|g| group(g.item.id, g.samples.iter().map(|s| (&s.completion, s.reward.total, s.reward.consistency.unwrap_or(0.0))).collect()));
    let exp = expression.iter().map(|g| group(g.item.id, g.samples.iter().map(|s| (&s.completion, s.reward.total, 0.0)).collect()));
    rec.chain(exp).collect()
}

/// Per-role means: `rewards/<component>/mean` over recogniser samples (format, recognition,
/// consistency, explanation), `rewards/expression/mean` and `rewards/responder_format/mean`
/// over responder samples, `responder/names_emotion` (the share of responder turns that name a
/// label or a synonym), and `reward/recogniser`, `reward/responder`.
pub fn role_metrics(recognition: &[RecognitionGroup], expression: &[ExpressionGroup]) -> BTreeMap<String, f64> {
    let mut sums: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for s in recognition.iter().flat_map(|g| &g.samples) {
        for (name, v) in s.reward.components() {
            sums.entry(format!("rewards/{name}/mean")).or_default().push(v);
        }
        sums.entry("reward/recogniser".into()).or_default().push(s.reward.total);
    }
    for s in expression.iter().flat_map(|g| &g.samples) {
        sums.entry("rewards/expression/mean".into()).or_default().push(s.reward.expression.unwrap_or(0.0));
        sums.entry("rewards/responder_format/mean".into()).or_default().push(s.reward.format);
        sums.entry("responder/names_emotion".into()).or_default().push(if s.mention.is_some() { 1.0 } else { 0.0 });
        sums.entry("reward/responder".into()).or_default().push(s.reward.total);
    }
    sums.into_iter().map(|(k, v)| (k, mean_std(&v).0)).collect()
}

/// The flywheel counts of a step as metric values (`flywheel/<rule>`).
pub fn count_metrics(c: &FilterCounts) -> BTreeMap<String, f64> {
    [
        ("recognition_seen", c.recognition_seen),
        ("recognition_below_tau", c.recognition_below_tau),
        ("synthetic_seen", c.synthetic_seen),
        ("synthetic_below_tau", c.synthetic_below_tau),
        ("synthetic_names_label", c.synthetic_names_label),
        ("duplicates", c.duplicates),
        ("over_cap", c.over_cap),
        ("kept_recognition", c.kept_recognition),
        ("kept_synthetic", c.kept_synthetic),
    ]
    .into_iter()
    .map(|(k, v)| (format!("flywheel/{k}"), v as f64))
    .collect()
}

/// One iteration's numbers, written to `iter-<k>/summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IterationSummary {
    /// k, from 1.
    pub iteration: u32,
    /// Its first and last optimiser step (from 1).
    pub steps: (u64, u64),
    /// Flywheel counts summed over its steps.
    pub kept: FilterCounts,
    /// Rows of `iter-<k>/flywheel.parquet`.
    pub flywheel_rows: usize,
    /// Synthetic recognition prompts it trained on.
    pub synthetic_prompts: usize,
    /// Mean reward of recogniser samples (`None` without any).
    pub reward_recogniser: Option<f64>,
    /// Mean reward of responder samples (`None` without a responder).
    pub reward_responder: Option<f64>,
    /// Mean R_E of responder samples (`None` without a responder).
    pub expression: Option<f64>,
    /// Dev scores after it.
    pub dev: DevResult,
}

/// Sums per-step `flywheel/*` metrics back into counts (an iteration's, from its rows).
pub fn counts_from_metrics<'a>(rows: impl Iterator<Item = &'a BTreeMap<String, f64>>) -> FilterCounts {
    let mut total = FilterCounts::default();
    for v in rows {
        let get = |k: &str| v.get(&format!("flywheel/{k}")).copied().unwrap_or(0.0) as usize;
        total.add(&FilterCounts {
            recognition_seen: get("recognition_seen"),
            recognition_below_tau: get("recognition_below_tau"),
            synthetic_seen: get("synthetic_seen"),
            synthetic_below_tau: get("synthetic_below_tau"),
            synthetic_names_label: get("synthetic_names_label"),
            duplicates: get("duplicates"),
            over_cap: get("over_cap"),
            kept_recognition: get("kept_recognition"),
            kept_synthetic: get("kept_synthetic"),
        });
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfemo_datasets::{Dataset, Dialogue, Split, Utterance};
    use selfemo_selfplay::TargetEmotion;

    #[test]
    fn each_synthetic_turn_is_a_prompt_once_per_iteration_then_real_prompts_fill_the_steps() {
        let meld = Dataset::Meld.labels();
        let u = |t: &str, l: &str| Utterance { speaker: "A".into(), text: t.into(), label: meld.parse(l) };
        let dialogue = Dialogue { id: "0".into(), split: Split::Train, utterances: vec![u("hi", "neutral"), u("yay", "joy"), u("ugh", "disgust")] };
        let corpus = Corpus { dataset: Dataset::Meld, dialogues: vec![dialogue] };
        let real: Vec<(Target, RecognitionItem)> =
            corpus.targets(Split::Train).into_iter().map(|t| (t, RecognitionItem::from_target(&corpus, t, 1, t.turn as u64).unwrap())).collect();
        let synthetic: Vec<RecognitionItem> = (0..3).map(|i| RecognitionItem { id: SYNTHETIC_IDS + i, synthetic: true, ..real[0].1.clone() }).collect();
        let config = SelfPlayConfig { synthetic_share: 0.5, responder_prompts_per_step: 0, ..Default::default() };
        let draw = EmotionDraw::new(TargetEmotion::NextTurn, &corpus);
        // Iteration 2 starting at run step 10: 4 prompts per step, up to round(0.5 × 4) = 2 synthetic.
        let used: Vec<Vec<u64>> = (0..4)
            .map(|j| {
                let items = step_items(10 + j, j, 4, &real, &synthetic, &config, &corpus, 1, 0, &draw);
                assert_eq!(items.recognition.len(), 4, "every step has its prompts");
                items.recognition.iter().filter(|i| i.synthetic).map(|i| i.id - SYNTHETIC_IDS).collect()
            })
            .collect();
        assert_eq!(used, [vec![0, 1], vec![2], vec![], vec![]]);
    }

    #[test]
    fn counts_survive_the_metrics_round_trip() {
        let c = FilterCounts {
            recognition_seen: 16,
            recognition_below_tau: 9,
            synthetic_seen: 8,
            synthetic_below_tau: 5,
            synthetic_names_label: 1,
            duplicates: 3,
            over_cap: 1,
            kept_recognition: 4,
            kept_synthetic: 2,
        };
        let row = count_metrics(&c);
        assert_eq!(
            counts_from_metrics([&row, &row].into_iter()),
            FilterCounts {
                recognition_seen: 32,
                recognition_below_tau: 18,
                synthetic_seen: 16,
                synthetic_below_tau: 10,
                synthetic_names_label: 2,
                duplicates: 6,
                over_cap: 2,
                kept_recognition: 8,
                kept_synthetic: 4
            }
        );
    }
}
