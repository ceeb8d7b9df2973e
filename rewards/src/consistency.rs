//! Group consistency C_i: how far each sample agrees with its group's majority prediction.
//!
//! [RECON] C_i = IoU_s(P_i, mode_j P_j): the mode is the most frequent non-empty predicted set
//! (ties go to the set seen first); an empty prediction (malformed or no label) gets C_i = 0,
//! so a group cannot earn consistency by agreeing on nothing.

use crate::iou::smoothed_iou;
use selfemo_datasets::Emotion;

/// The most frequent non-empty set among `predictions`, compared as sets; `None` if all are empty.
pub fn group_mode(predictions: &[&[Emotion]]) -> Option<Vec<Emotion>> {
    let canon = |p: &[Emotion]| {
        let mut v = p.to_vec();
        v.sort();
        v.dedup();
        v
    };
    let sets: Vec<Vec<Emotion>> = predictions.iter().map(|p| canon(p)).collect();
    let mut best: Option<(usize, &Vec<Emotion>)> = None;
    for s in sets.iter().filter(|s| !s.is_empty()) {
        let n = sets.iter().filter(|t| *t == s).count();
        if best.is_none_or(|(m, _)| n > m) {
            best = Some((n, s));
        }
    }
    best.map(|(_, s)| s.clone())
}

/// C_i for every sample of a group.
pub fn group_consistency(predictions: &[&[Emotion]], lambda: f64) -> Vec<f64> {
    let mode = group_mode(predictions);
    predictions
        .iter()
        .map(|p| match &mode {
            Some(m) if !p.is_empty() => smoothed_iou(p, m, lambda),
            _ => 0.0,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfemo_datasets::labels::MELD;

    fn s(names: &[&str]) -> Vec<Emotion> {
        names.iter().map(|n| MELD.parse(n).unwrap()).collect()
    }

    #[test]
    fn majority_set_and_scores() {
        let (a, b, c, d) = (s(&["joy"]), s(&["surprise", "joy"]), s(&["joy", "surprise"]), s(&["joy", "surprise"]));
        let group: Vec<&[Emotion]> = vec![&a, &b, &c, &d];
        let mode = group_mode(&group).unwrap();
        assert_eq!(mode, s(&["surprise", "joy"]).into_iter().collect::<std::collections::BTreeSet<_>>().into_iter().collect::<Vec<_>>());
        assert_eq!(group_consistency(&group, 1.0), [2.0 / 3.0, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn empty_predictions_never_form_the_mode_and_score_zero() {
        let (a, e) = (s(&["anger"]), Vec::new());
        let group: Vec<&[Emotion]> = vec![&e, &e, &a];
        assert_eq!(group_consistency(&group, 1.0), [0.0, 0.0, 1.0]);
        let all_empty: Vec<&[Emotion]> = vec![&e, &e];
        assert_eq!(group_mode(&all_empty), None);
        assert_eq!(group_consistency(&all_empty, 1.0), [0.0, 0.0]);
    }

    #[test]
    fn ties_go_to_the_first_seen_set() {
        let (a, b) = (s(&["fear"]), s(&["anger"]));
        let group: Vec<&[Emotion]> = vec![&a, &b, &b, &a];
        assert_eq!(group_mode(&group).unwrap(), a);
    }
}
