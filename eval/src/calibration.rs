//! Logit adjustment for score mode (Menon et al. 2021, "Long-tail learning via logit
//! adjustment"): a bias b_c per label is added to log π(c | prompt) before the argmax. The
//! biases are fitted on dev predictions by coordinate ascent on dev weighted F1 (a grid of
//! values per label, a few rounds), then applied unchanged to test: a policy whose scores rank
//! the classes well but lean toward the majority prior is read out at the operating point dev
//! prefers. Hand-written: a few lines of search, no crate does this.

use crate::predictions::{Prediction, report_of};
use selfemo_datasets::LabelSet;
use serde::{Deserialize, Serialize};

/// Per-label biases, in label-set order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogitAdjustment {
    /// b_c.
    pub bias: Vec<f64>,
}

/// Candidate biases, smallest magnitude first (so a tie keeps the smaller change).
fn grid() -> Vec<f64> {
    let mut g: Vec<f64> = (-24..=24).map(|k| f64::from(k) * 0.25).collect();
    g.sort_by(|a, b| a.abs().total_cmp(&b.abs()));
    g
}

const ROUNDS: usize = 3;

impl LogitAdjustment {
    /// No adjustment.
    pub fn none(labels: &LabelSet) -> Self {
        Self { bias: vec![0.0; labels.len()] }
    }

    /// The biases that maximise the weighted F1 of `dev` (score-mode predictions with label
    /// log-probs), by coordinate ascent from 0.
    pub fn fit(dev: &[Prediction], labels: &LabelSet) -> Self {
        let mut best = Self::none(labels);
        let mut score = report_of(&best.apply(dev, labels), labels).weighted_f1;
        for _ in 0..ROUNDS {
            for c in 0..labels.len() {
                for b in grid() {
                    let mut trial = best.clone();
                    trial.bias[c] = b;
                    let s = report_of(&trial.apply(dev, labels), labels).weighted_f1;
                    if s > score + 1e-12 {
                        (best, score) = (trial, s);
                    }
                }
            }
        }
        best
    }

    /// `predictions` re-predicted from their label log-probs plus the biases (those without
    /// log-probs are left as they are).
    pub fn apply(&self, predictions: &[Prediction], labels: &LabelSet) -> Vec<Prediction> {
        predictions
            .iter()
            .map(|p| match &p.label_logprobs {
                Some(lp) => {
                    let adjusted: Vec<f64> = lp.iter().zip(&self.bias).map(|(x, b)| x + b).collect();
                    Prediction { predicted: labels.argmax(&adjusted), ..p.clone() }
                }
                None => p.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfemo_datasets::Target;
    use selfemo_datasets::labels::MELD;

    /// A policy that ranks joy vs neutral right but always puts neutral 1 nat higher.
    fn leaning(n: usize) -> Vec<Prediction> {
        let (neutral, joy) = (MELD.parse("neutral").unwrap(), MELD.parse("joy").unwrap());
        (0..n)
            .map(|i| {
                let gold = if i % 3 == 0 { joy } else { neutral };
                let evidence = if gold == joy { 0.6 } else { -0.6 };
                let mut lp = vec![-9.0; 7];
                lp[0] = -1.0; // neutral
                lp[4] = -1.0 - 1.0 + evidence; // joy
                Prediction { target: Target { dialogue: 0, turn: i }, gold, predicted: MELD.argmax(&lp), completion: None, label_logprobs: Some(lp) }
            })
            .collect()
    }

    #[test]
    fn a_fitted_bias_undoes_a_lean_toward_the_majority() {
        let dev = leaning(30);
        let before = report_of(&dev, &MELD);
        assert_eq!(before.top_prediction_share, 1.0, "every target read as neutral");
        let fit = LogitAdjustment::fit(&dev, &MELD);
        let after = report_of(&fit.apply(&dev, &MELD), &MELD);
        assert_eq!(after.accuracy, 1.0, "{fit:?}");
        // joy needs b_joy − b_neutral in (0.4, 1.6): the smallest grid step that gets there
        let gap = fit.bias[4] - fit.bias[0];
        assert!(gap > 0.4 && gap < 1.6, "{fit:?}");
        // applied unchanged to other targets with the same lean
        let test = leaning(9);
        assert_eq!(report_of(&fit.apply(&test, &MELD), &MELD).accuracy, 1.0);
        assert_eq!(LogitAdjustment::none(&MELD).apply(&test, &MELD), test);
    }
}
