//! The data flywheel: keep-rules over self-play rollouts, deduplication and a cap per source
//! utterance. Kept recognition samples and synthetic turns (context + generated turn, labelled
//! e*) become rows; synthetic turns are the next iteration's new recognition items.

use crate::items::RecognitionItem;
use crate::rollout::{ExpressionGroup, RecognitionGroup};
use selfemo_datasets::{Emotion, LabelSet, Mention, Utterance};
use selfemo_rewards::RewardBreakdown;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Keep-rule thresholds and limits. [RECON]: the paper gives none; these defaults are ours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlywheelConfig {
    /// τ_U: keep a well-formed recogniser sample when R_U ≥ τ_U (default 1.0: P = G exactly).
    pub tau_u: f64,
    /// τ_E: keep a responder group's turns when its mean R_E ≥ τ_E, and then each turn whose
    /// own R_E ≥ τ_E (default 0.75: with λ = 1, three of four re-recognitions agree).
    pub tau_e: f64,
    /// At most this many rows of each kind per source utterance over the run (default 2).
    pub max_per_source: usize,
}

impl Default for FlywheelConfig {
    fn default() -> Self {
        Self { tau_u: 1.0, tau_e: 0.75, max_per_source: 2 }
    }
}

impl FlywheelConfig {
    /// Checks values, naming the field at fault.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [("tau_u", self.tau_u), ("tau_e", self.tau_e)] {
            if !v.is_finite() {
                return Err(format!("selfplay.flywheel.{name} must be finite, got {v}"));
            }
        }
        if self.max_per_source == 0 {
            return Err("selfplay.flywheel.max_per_source must be at least 1".into());
        }
        Ok(())
    }
}

/// What a kept row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A recogniser completion that matched the gold set (R_U ≥ τ_U).
    Recognition,
    /// A generated turn whose re-recognitions agree with e* (R_E ≥ τ_E): a new recognition sample.
    Synthetic,
}

impl Kind {
    /// The name written in the `kind` column.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Recognition => "recognition",
            Kind::Synthetic => "synthetic",
        }
    }
}

/// One kept sample, as stored in `iter-<k>/flywheel.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct FlywheelRow {
    /// Self-play iteration k (from 1).
    pub iteration: u32,
    /// Optimiser step whose rollout produced it (from 1).
    pub step: u64,
    /// Recognition sample or synthetic turn.
    pub kind: Kind,
    /// Source utterance (`dataset/split/dialogue/turn`).
    pub source: String,
    /// Context turns shown before `turn`, oldest first.
    pub context: Vec<Utterance>,
    /// Speaker of `turn`.
    pub speaker: String,
    /// The target turn: the corpus turn (recognition) or the generated turn r (synthetic).
    pub turn: String,
    /// Gold label (recognition) or e* (synthetic).
    pub label: String,
    /// The prompt the completion answered (system, user, reply prefix, joined by newlines).
    pub prompt: String,
    /// The completion (recognition: the reply; synthetic: the responder's raw completion).
    pub completion: String,
    /// P (recognition) or Q (synthetic), comma-separated.
    pub prediction: String,
    /// Format reward.
    pub reward_format: f64,
    /// R_U (recognition rows).
    pub reward_recognition: Option<f64>,
    /// R_E (synthetic rows).
    pub reward_expression: Option<f64>,
    /// C_i (recognition rows).
    pub reward_consistency: Option<f64>,
    /// r_i.
    pub reward_total: f64,
}

impl FlywheelRow {
    /// The row as a recognition target: its context, then its turn labelled with its label
    /// (`None` when the label is not in `labels`).
    pub fn turns(&self, labels: &LabelSet) -> Option<(Vec<Utterance>, Emotion)> {
        let gold = labels.parse(&self.label)?;
        let mut turns = self.context.clone();
        turns.push(Utterance { speaker: self.speaker.clone(), text: self.turn.clone(), label: Some(gold) });
        Some((turns, gold))
    }
}

/// How many samples each rule looked at and let through, in one admission.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterCounts {
    /// Recogniser samples seen.
    pub recognition_seen: usize,
    /// ... malformed or below τ_U.
    pub recognition_below_tau: usize,
    /// Responder samples seen.
    pub synthetic_seen: usize,
    /// ... in a group whose mean R_E is below τ_E, or themselves below it, or empty.
    pub synthetic_below_tau: usize,
    /// ... naming a label of the set (never kept, whatever τ_E).
    #[serde(default)]
    pub synthetic_names_label: usize,
    /// Dropped as a repeat of a kept row (same kind, source and text).
    pub duplicates: usize,
    /// Dropped by the per-source cap.
    pub over_cap: usize,
    /// Recognition rows kept.
    pub kept_recognition: usize,
    /// Synthetic rows kept.
    pub kept_synthetic: usize,
}

impl FilterCounts {
    /// Sums counts (per-step counts into an iteration's).
    pub fn add(&mut self, other: &FilterCounts) {
        self.recognition_seen += other.recognition_seen;
        self.recognition_below_tau += other.recognition_below_tau;
        self.synthetic_seen += other.synthetic_seen;
        self.synthetic_below_tau += other.synthetic_below_tau;
        self.synthetic_names_label += other.synthetic_names_label;
        self.duplicates += other.duplicates;
        self.over_cap += other.over_cap;
        self.kept_recognition += other.kept_recognition;
        self.kept_synthetic += other.kept_synthetic;
    }
}

/// Case- and whitespace-insensitive text, the deduplication key.
fn normalise(text: &str) -> String {
    text.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>().join(" ")
}

/// Context turns as stored: speaker and text (the prompts never show context labels).
fn unlabelled(turns: &[Utterance]) -> Vec<Utterance> {
    turns.iter().map(|u| Utterance { label: None, ..u.clone() }).collect()
}

fn prompt_text(p: &crate::prompts::FilledPrompt) -> String {
    format!("{}\n{}\n{}", p.system, p.user, p.reply_prefix)
}

/// Every row kept so far in a run, with the dedup and cap state they imply.
#[derive(Debug, Clone, Default)]
pub struct Flywheel {
    rows: Vec<FlywheelRow>,
    seen: BTreeSet<(Kind, String, String)>,
    per_source: BTreeMap<(Kind, String), usize>,
}

impl Flywheel {
    /// A flywheel holding `rows` (read back from earlier iterations' files).
    pub fn new(rows: Vec<FlywheelRow>) -> Self {
        let mut f = Self::default();
        for row in rows {
            f.insert(row);
        }
        f
    }

    fn key(row: &FlywheelRow) -> (Kind, String, String) {
        let text = match row.kind {
            Kind::Recognition => &row.completion,
            Kind::Synthetic => &row.turn,
        };
        (row.kind, row.source.clone(), normalise(text))
    }

    fn insert(&mut self, row: FlywheelRow) {
        self.seen.insert(Self::key(&row));
        *self.per_source.entry((row.kind, row.source.clone())).or_default() += 1;
        self.rows.push(row);
    }

    /// Offers a candidate: kept unless it repeats a kept row or its source is at the cap.
    fn offer(&mut self, row: FlywheelRow, cap: usize, counts: &mut FilterCounts) {
        if self.seen.contains(&Self::key(&row)) {
            counts.duplicates += 1;
        } else if self.per_source.get(&(row.kind, row.source.clone())).copied().unwrap_or(0) >= cap {
            counts.over_cap += 1;
        } else {
            match row.kind {
                Kind::Recognition => counts.kept_recognition += 1,
                Kind::Synthetic => counts.kept_synthetic += 1,
            }
            self.insert(row);
        }
    }

    /// Applies the keep-rules to one step's rollouts and keeps what passes, in rollout order.
    pub fn admit(
        &mut self,
        iteration: u32,
        step: u64,
        recognition: &[RecognitionGroup],
        expression: &[ExpressionGroup],
        config: &FlywheelConfig,
    ) -> FilterCounts {
        let mut counts = FilterCounts::default();
        // The fields every row of a group shares; turn, completion and prediction per sample.
        let base = |kind, source: &str, context: &[Utterance], speaker: &str, label: Emotion, prompt, reward: &RewardBreakdown| FlywheelRow {
            iteration,
            step,
            kind,
            source: source.into(),
            context: unlabelled(context),
            speaker: speaker.into(),
            turn: String::new(),
            label: label.name().into(),
            prompt: prompt_text(prompt),
            completion: String::new(),
            prediction: String::new(),
            reward_format: reward.format,
            reward_recognition: reward.recognition,
            reward_expression: reward.expression,
            reward_consistency: reward.consistency,
            reward_total: reward.total,
        };
        for group in recognition {
            let window = group.item.window();
            for s in &group.samples {
                counts.recognition_seen += 1;
                if s.reward.format < 1.0 || s.reward.recognition.unwrap_or(0.0) < config.tau_u {
                    counts.recognition_below_tau += 1;
                    continue;
                }
                let row = FlywheelRow {
                    turn: window.target.text.clone(),
                    completion: s.reply.clone(),
                    prediction: s.prediction.iter().map(|e| e.name()).collect::<Vec<_>>().join(", "),
                    ..base(Kind::Recognition, &group.item.source, window.context, &window.target.speaker, group.item.gold, &group.prompt, &s.reward)
                };
                self.offer(row, config.max_per_source, &mut counts);
            }
        }
        for group in expression {
            let agrees = group.mean_expression() >= config.tau_e;
            for s in &group.samples {
                counts.synthetic_seen += 1;
                if matches!(s.mention, Some(Mention::Label(_))) {
                    counts.synthetic_names_label += 1;
                    continue;
                }
                if !agrees || s.reward.expression.unwrap_or(0.0) < config.tau_e || s.turn.is_empty() {
                    counts.synthetic_below_tau += 1;
                    continue;
                }
                let row = FlywheelRow {
                    turn: s.turn.clone(),
                    completion: s.completion.text.clone(),
                    prediction: s.rerecognised.map_or(String::new(), |e| e.name().to_string()),
                    ..base(Kind::Synthetic, &group.item.source, &group.item.turns, &group.item.speaker, group.item.emotion, &group.prompt, &s.reward)
                };
                self.offer(row, config.max_per_source, &mut counts);
            }
        }
        counts
    }

    /// Every kept row, in the order kept.
    pub fn rows(&self) -> &[FlywheelRow] {
        &self.rows
    }

    /// The rows of iteration `k`: what `iter-<k>/flywheel.parquet` holds.
    pub fn iteration_rows(&self, k: u32) -> Vec<FlywheelRow> {
        self.rows.iter().filter(|r| r.iteration == k).cloned().collect()
    }

    /// Recognition rows kept in iteration `k`, as (item, completion after the reply prefix
    /// `reply_prefix`): the next iteration's SFT examples (the kept rationales). Rows whose
    /// label is not in `labels`, or whose completion does not start with the prefix, are skipped.
    pub fn recognition_examples(&self, k: u32, labels: &LabelSet, reply_prefix: &str, first_id: u64) -> Vec<(RecognitionItem, String)> {
        self.rows
            .iter()
            .filter(|r| r.kind == Kind::Recognition && r.iteration == k)
            .filter_map(|r| {
                let (turns, gold) = r.turns(labels)?;
                let completion = r.completion.strip_prefix(reply_prefix)?.to_string();
                Some((r.source.clone(), turns, gold, completion))
            })
            .enumerate()
            .map(|(i, (source, turns, gold, completion))| (RecognitionItem { id: first_id + i as u64, source, turns, gold, synthetic: false }, completion))
            .collect()
    }

    /// Synthetic turns kept before iteration `k`, as recognition items (gold = e*), with ids
    /// from `first_id` on. Rows whose label is not in `labels` are skipped.
    pub fn synthetic_items(&self, k: u32, labels: &LabelSet, first_id: u64) -> Vec<RecognitionItem> {
        self.rows
            .iter()
            .filter(|r| r.kind == Kind::Synthetic && r.iteration < k)
            .filter_map(|r| {
                let (turns, gold) = r.turns(labels)?;
                Some((format!("{}/synthetic", r.source), turns, gold))
            })
            .enumerate()
            .map(|(i, (source, turns, gold))| RecognitionItem { id: first_id + i as u64, source, turns, gold, synthetic: true })
            .collect()
    }
}
