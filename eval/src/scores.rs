//! ERC scores with scikit-learn semantics: accuracy, weighted and macro F1, per-class
//! precision/recall/F1/support and the confusion matrix.
//!
//! Classes are those that occur in gold or prediction, in the label set's order
//! (`f1_score(average="weighted")` with `labels` = that union, `zero_division=0`). An
//! unparseable or out-of-set prediction is `None`: it is wrong, lowers its gold class's recall,
//! and forms no class of its own (so macro F1 averages real labels only).

use serde::{Deserialize, Serialize};

/// Precision, recall, F1 and support of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassScore {
    /// The label.
    pub label: String,
    /// TP / (TP + FP), 0 when nothing was predicted.
    pub precision: f64,
    /// TP / support, 0 when support is 0.
    pub recall: f64,
    /// Harmonic mean, 0 when both are 0.
    pub f1: f64,
    /// Gold count.
    pub support: usize,
}

/// Every score of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Share of exact matches.
    pub accuracy: f64,
    /// Support-weighted mean F1 (the ERC headline metric).
    pub weighted_f1: f64,
    /// Unweighted mean F1 over the classes.
    pub macro_f1: f64,
    /// Share of predictions that were `None` (malformed or out of set).
    pub invalid_rate: f64,
    /// The label predicted most often (`None` when nothing valid was predicted).
    #[serde(default)]
    pub top_prediction: Option<String>,
    /// Its share of all predictions: 1.0 for a policy that answers one label for everything.
    #[serde(default)]
    pub top_prediction_share: f64,
    /// Per class, in order.
    pub per_class: Vec<ClassScore>,
    /// Rows gold, columns predicted, in `per_class` order (invalid predictions not counted).
    pub confusion: Vec<Vec<usize>>,
}

impl Report {
    /// The headline numbers on one line: accuracy, weighted and macro F1, invalid share, and
    /// the most frequent prediction with its share.
    pub fn summary(&self) -> String {
        format!(
            "accuracy {:.4}  weighted F1 {:.4}  macro F1 {:.4}  invalid {:.3}  top {} {:.2}",
            self.accuracy,
            self.weighted_f1,
            self.macro_f1,
            self.invalid_rate,
            self.top_prediction.as_deref().unwrap_or("-"),
            self.top_prediction_share
        )
    }
}

/// Scores `pred` against `gold` (same length); `order` gives the label order (the dataset's set).
pub fn report(gold: &[&str], pred: &[Option<&str>], order: &[&str]) -> Report {
    assert_eq!(gold.len(), pred.len(), "one prediction per gold label");
    let occurs = |l: &str| gold.contains(&l) || pred.contains(&Some(l));
    let mut labels: Vec<&str> = order.iter().copied().filter(|l| occurs(l)).collect();
    for l in gold.iter().copied().chain(pred.iter().flatten().copied()) {
        if !labels.contains(&l) {
            labels.push(l);
        }
    }
    let k = labels.len();
    let index = |l: &str| labels.iter().position(|x| *x == l);
    let mut confusion = vec![vec![0usize; k]; k];
    for (g, p) in gold.iter().zip(pred) {
        if let (Some(gi), Some(pi)) = (index(g), p.and_then(index)) {
            confusion[gi][pi] += 1;
        }
    }
    let n = gold.len();
    let per_class: Vec<ClassScore> = (0..k)
        .map(|c| {
            let tp = confusion[c][c] as f64;
            let predicted: usize = (0..k).map(|r| confusion[r][c]).sum();
            let support = gold.iter().filter(|g| **g == labels[c]).count();
            let precision = if predicted == 0 { 0.0 } else { tp / predicted as f64 };
            let recall = if support == 0 { 0.0 } else { tp / support as f64 };
            let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
            ClassScore { label: labels[c].to_string(), precision, recall, f1, support }
        })
        .collect();
    let correct = gold.iter().zip(pred).filter(|(g, p)| **p == Some(**g)).count();
    let predicted_as = |c: usize| (0..k).map(|r| confusion[r][c]).sum::<usize>();
    let top = (0..k).max_by_key(|c| (predicted_as(*c), std::cmp::Reverse(*c))).filter(|c| predicted_as(*c) > 0);
    let total_support: usize = per_class.iter().map(|c| c.support).sum();
    Report {
        accuracy: if n == 0 { 0.0 } else { correct as f64 / n as f64 },
        weighted_f1: if total_support == 0 { 0.0 } else { per_class.iter().map(|c| c.f1 * c.support as f64).sum::<f64>() / total_support as f64 },
        macro_f1: if k == 0 { 0.0 } else { per_class.iter().map(|c| c.f1).sum::<f64>() / k as f64 },
        invalid_rate: if n == 0 { 0.0 } else { pred.iter().filter(|p| p.is_none()).count() as f64 / n as f64 },
        top_prediction: top.map(|c| labels[c].to_string()),
        top_prediction_share: top.map_or(0.0, |c| predicted_as(c) as f64 / n.max(1) as f64),
        per_class,
        confusion,
    }
}
