//! The weighted total reward r_i = w_f·format + w_u·R_U + w_e·R_E + w_x·explanation + w_g·C_i,
//! with a per-component breakdown the trainer logs as `rewards/<name>/mean`.

use crate::affect::Similarity;
use crate::consistency::group_consistency;
use crate::contract::{Parsed, parse};
use crate::explanation::{Verifier, explanation_reward};
use crate::iou::soft_iou;
use selfemo_datasets::{Emotion, LabelSet, Mention};
use serde::{Deserialize, Serialize};

/// Weights of the reward components. [RECON]: the paper gives no weights; these are ours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewardWeights {
    /// w_f, format reward (default 0.5; R1-V/ERV sum it with unit weight beside a 0/1 accuracy).
    pub format: f64,
    /// w_u, recognition R_U = IoU_s(P, G) (default 1.0).
    pub recognition: f64,
    /// w_e, expression consistency R_E = IoU_s(Q, {e*}) (default 1.0).
    pub expression: f64,
    /// w_x, ERV explanation reward (default 0.0: it needs a verifier pass per sentence).
    pub explanation: f64,
    /// w_g, group consistency C_i (default 0.2).
    pub consistency: f64,
}

impl Default for RewardWeights {
    fn default() -> Self {
        Self { format: 0.5, recognition: 1.0, expression: 1.0, explanation: 0.0, consistency: 0.2 }
    }
}

/// How rewards are computed. Every default is [RECON] (ours, not the paper's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewardConfig {
    /// λ of the smoothed IoU, ≥ 0 (default 1.0; 0 is plain IoU).
    pub lambda: f64,
    /// Label similarity inside the IoU (default `exact`; `valence_arousal` gives near misses credit).
    pub similarity: Similarity,
    /// Component weights.
    pub weights: RewardWeights,
}

impl Default for RewardConfig {
    fn default() -> Self {
        Self { lambda: 1.0, similarity: Similarity::Exact, weights: RewardWeights::default() }
    }
}

impl RewardConfig {
    /// Checks values, naming the field at fault.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.lambda >= 0.0 && self.lambda.is_finite()) {
            return Err(format!("rewards.lambda must be a finite number >= 0, got {}", self.lambda));
        }
        if let Similarity::ValenceArousal { radius } = self.similarity
            && !(radius > 0.0 && radius.is_finite())
        {
            return Err(format!("rewards.similarity.radius must be > 0, got {radius}"));
        }
        let w = &self.weights;
        for (name, v) in
            [("format", w.format), ("recognition", w.recognition), ("expression", w.expression), ("explanation", w.explanation), ("consistency", w.consistency)]
        {
            if !v.is_finite() {
                return Err(format!("rewards.weights.{name} must be finite, got {v}"));
            }
        }
        Ok(())
    }

    /// IoU_s(A ∪ invalid, B) under this config.
    pub fn iou(&self, a: &[Emotion], invalid: usize, b: &[Emotion]) -> f64 {
        soft_iou(a, invalid, b, self.lambda, &self.similarity)
    }
}

/// Each component of one sample's reward; `None` where the component does not apply to the role.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RewardBreakdown {
    /// Format reward, 0 or 1.
    pub format: f64,
    /// R_U, recogniser samples.
    pub recognition: Option<f64>,
    /// R_E, responder samples.
    pub expression: Option<f64>,
    /// ERV explanation reward, when a verifier is given.
    pub explanation: Option<f64>,
    /// C_i, recogniser samples scored as a group.
    pub consistency: Option<f64>,
    /// The weighted sum of the components present.
    pub total: f64,
}

impl RewardBreakdown {
    /// Sets `total` from the components present.
    pub fn with_total(mut self, w: &RewardWeights) -> Self {
        self.total = w.format * self.format
            + w.recognition * self.recognition.unwrap_or(0.0)
            + w.expression * self.expression.unwrap_or(0.0)
            + w.explanation * self.explanation.unwrap_or(0.0)
            + w.consistency * self.consistency.unwrap_or(0.0);
        self
    }

    /// (name, value) of each component present, with the names the metrics use.
    pub fn components(&self) -> Vec<(&'static str, f64)> {
        let mut out = vec![("format", self.format)];
        for (name, v) in
            [("recognition", self.recognition), ("expression", self.expression), ("explanation", self.explanation), ("consistency", self.consistency)]
        {
            if let Some(v) = v {
                out.push((name, v));
            }
        }
        out
    }
}

/// Scores a group of recogniser completions for one target with gold set `gold`.
///
/// Each gets format (the contract with at least one valid label), R_U = IoU_s(P_i, G) (invalid
/// answer words count as wrong labels; an empty P scores 0), C_i against the group's mode, and
/// the explanation reward (target: its own answer) when a verifier is given. Returns the parses
/// and breakdowns in sample order.
pub fn score_recognition_group(
    completions: &[&str],
    gold: &[Emotion],
    labels: &LabelSet,
    config: &RewardConfig,
    verifier: Option<&dyn Verifier>,
) -> Vec<(Parsed, RewardBreakdown)> {
    let parsed: Vec<Parsed> = completions.iter().map(|c| parse(c, labels)).collect();
    let predictions: Vec<&[Emotion]> = parsed.iter().map(|p| p.prediction()).collect();
    let consistency = group_consistency(&predictions, config.lambda);
    let neutral = labels.get(0).expect("label sets are not empty");
    parsed
        .into_iter()
        .zip(consistency)
        .map(|(p, c)| {
            let breakdown = RewardBreakdown {
                format: p.format_reward(),
                recognition: Some(config.iou(&p.labels, p.invalid.len(), gold)),
                expression: None,
                explanation: verifier.map(|v| explanation_reward(&p.think, &p.labels, neutral, v)),
                consistency: Some(c),
                total: 0.0,
            }
            .with_total(&config.weights);
            (p, breakdown)
        })
        .collect()
}

/// Scores one responder turn r: `format_ok` is whether the responder met its own contract, and
/// `rerecognised` is the recogniser's parse of r, Q. R_E = IoU_s(Q, {e*}) (0 for an empty Q),
/// and 0 when r names a label of the set (`joy`, `anger`: a whole word, any case): the
/// re-recogniser, being the same policy, would hear such a turn by reading it.
pub fn score_expression(turn: &str, format_ok: bool, rerecognised: &Parsed, requested: Emotion, labels: &LabelSet, config: &RewardConfig) -> RewardBreakdown {
    let names_label = matches!(labels.mention_in(turn), Some(Mention::Label(_)));
    let expression = if names_label { 0.0 } else { config.iou(&rerecognised.labels, rerecognised.invalid.len(), &[requested]) };
    RewardBreakdown { format: if format_ok { 1.0 } else { 0.0 }, expression: Some(expression), ..Default::default() }.with_total(&config.weights)
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfemo_datasets::labels::MELD;

    #[test]
    fn recognition_group_hand_worked() {
        let gold = [MELD.parse("joy").unwrap()];
        let group = [
            "<think>She laughs.</think><answer>joy</answer>",
            "<think>Hm.</think><answer>joy, surprise</answer>",
            "joy",                                      // malformed
            "<think>?</think><answer>boredom</answer>", // out of set
        ];
        let cfg = RewardConfig::default();
        let out = score_recognition_group(&group, &gold, &MELD, &cfg, None);
        let r: Vec<_> = out.iter().map(|(_, b)| (b.format, b.recognition.unwrap(), b.consistency.unwrap())).collect();
        assert_eq!(r[0], (1.0, 1.0, 1.0)); // mode is {joy} (first seen among ties)
        assert_eq!(r[1], (1.0, 2.0 / 3.0, 2.0 / 3.0));
        assert_eq!(r[2], (0.0, 0.0, 0.0), "malformed: empty P, nothing earned");
        assert_eq!(r[3], (0.0, 0.0, 0.0), "well formed but no valid label: no format reward, empty P");
        assert!((out[0].1.total - (0.5 + 1.0 + 0.2)).abs() < 1e-12);
        assert_eq!(out[2].1.total, 0.0);
        assert_eq!(out[3].0.invalid, ["boredom"]);
    }

    #[test]
    fn abstaining_never_beats_a_wrong_guess() {
        let gold = [MELD.parse("joy").unwrap()];
        let group = ["<think>x</think><answer>anger</answer>", "<think>x</think><answer></answer>", "<think>x</think><answer>joy, boredom</answer>"];
        let out = score_recognition_group(&group, &gold, &MELD, &RewardConfig::default(), None);
        let (wrong, empty) = (&out[0].1, &out[1].1);
        assert_eq!((wrong.format, wrong.recognition), (1.0, Some(1.0 / 3.0)));
        assert_eq!((empty.format, empty.recognition), (0.0, Some(0.0)));
        assert!(empty.total < wrong.total, "{} vs {}", empty.total, wrong.total);
        // a valid label beside an invalid word keeps the format reward; the word joins the union
        assert_eq!((out[2].1.format, out[2].1.recognition), (1.0, Some(2.0 / 3.0)));
    }

    #[test]
    fn expression_reward_against_the_requested_emotion() {
        let cfg = RewardConfig::default();
        let q = parse("<think>x</think><answer>anger</answer>", &MELD);
        let turn = "Get out of my apartment!";
        let b = score_expression(turn, true, &q, MELD.parse("anger").unwrap(), &MELD, &cfg);
        assert_eq!((b.format, b.expression), (1.0, Some(1.0)));
        assert_eq!(b.total, 1.5);
        let b = score_expression(turn, false, &q, MELD.parse("joy").unwrap(), &MELD, &cfg);
        assert_eq!(b.expression, Some(1.0 / 3.0));
        assert_eq!(b.components().len(), 2);
        let nothing = Parsed::default();
        assert_eq!(score_expression(turn, true, &nothing, MELD.parse("anger").unwrap(), &MELD, &cfg).expression, Some(0.0), "an empty Q");
    }

    #[test]
    fn a_turn_that_names_a_label_earns_no_expression_reward() {
        let cfg = RewardConfig::default();
        let anger = MELD.parse("anger").unwrap();
        let q = parse("<think>x</think><answer>anger</answer>", &MELD);
        assert_eq!(score_expression("I feel ANGER right now.", true, &q, anger, &MELD, &cfg).expression, Some(0.0));
        assert_eq!(score_expression("Pure joy, this is not.", true, &q, anger, &MELD, &cfg).expression, Some(0.0), "any label of the set");
        assert_eq!(score_expression("I'm so angry!", true, &q, anger, &MELD, &cfg).expression, Some(1.0), "a synonym is expression, not a label");
    }

    #[test]
    fn config_reads_from_toml_and_rejects_bad_values() {
        let cfg: RewardConfig = toml::from_str("lambda = 0.5\n[weights]\nconsistency = 0.0\n[similarity]\nkind = \"valence_arousal\"\nradius = 1.5\n").unwrap();
        assert_eq!(cfg.lambda, 0.5);
        assert_eq!(cfg.weights.recognition, 1.0);
        assert_eq!(cfg.similarity, Similarity::ValenceArousal { radius: 1.5 });
        let err = toml::from_str::<RewardConfig>("lamda = 0.5").unwrap_err().to_string();
        assert!(err.contains("unknown field `lamda`"), "{err}");
        let bad = RewardConfig { lambda: -1.0, ..Default::default() };
        assert!(bad.validate().unwrap_err().contains("rewards.lambda"));
    }
}
