//! Smoothed IoU between label sets, the alignment measure behind every SELF-EMO reward.
//!
//! [RECON] IoU_s(A, B) = (|A ∩ B| + λ) / (|A ∪ B| + λ). The form and the default λ = 1 are our
//! reconstruction (the paper names a "smoothed IoU" without its formula). With λ = 0 it is
//! plain IoU, defined as 1 when both sets are empty.
//!
//! The smoothing credits overlap, never abstention: when exactly one of A and B is empty
//! IoU_s = 0, whatever λ. Otherwise an empty answer ((0 + λ)/(|B| + λ) = ½ for one gold label)
//! would beat every wrong guess (⅓), and a policy learns to say nothing.

use crate::affect::Similarity;
use selfemo_datasets::Emotion;

/// IoU_s(A, B) with smoothing `lambda` ≥ 0; `a` and `b` are sets (no repeats).
///
/// `extra_a` counts further items of A outside every label set (invalid answer words): they
/// join the union and never the intersection, so naming a non-label costs like a wrong label.
pub fn smoothed_iou_with_invalid(a: &[Emotion], extra_a: usize, b: &[Emotion], lambda: f64) -> f64 {
    if a.is_empty() != b.is_empty() {
        return 0.0;
    }
    let inter = a.iter().filter(|x| b.contains(x)).count() as f64;
    let union = (a.len() + extra_a + b.len()) as f64 - inter;
    ratio(inter, union, lambda)
}

/// IoU_s(A, B) = (|A ∩ B| + λ) / (|A ∪ B| + λ); 1 when both are empty, 0 when only one is.
pub fn smoothed_iou(a: &[Emotion], b: &[Emotion], lambda: f64) -> f64 {
    smoothed_iou_with_invalid(a, 0, b, lambda)
}

/// Similarity-smoothed IoU: |A ∩ B| becomes the soft match
/// m = ½ (Σ_{a∈A} max_{b∈B} sim(a,b) + Σ_{b∈B} max_{a∈A} sim(a,b)), and |A ∪ B| = |A| + |B| − m.
///
/// With sim the identity this is [`smoothed_iou`]; near-miss labels (angry vs frustrated) earn
/// partial credit. `extra_a` as in [`smoothed_iou_with_invalid`] (similarity 0 to everything).
pub fn soft_iou(a: &[Emotion], extra_a: usize, b: &[Emotion], lambda: f64, sim: &Similarity) -> f64 {
    if a.is_empty() != b.is_empty() {
        return 0.0;
    }
    let best = |x: &Emotion, ys: &[Emotion]| ys.iter().map(|y| sim.between(*x, *y)).fold(0.0, f64::max);
    let m = 0.5 * (a.iter().map(|x| best(x, b)).sum::<f64>() + b.iter().map(|y| best(y, a)).sum::<f64>());
    let union = (a.len() + extra_a + b.len()) as f64 - m;
    ratio(m, union, lambda)
}

fn ratio(inter: f64, union: f64, lambda: f64) -> f64 {
    if union + lambda <= 0.0 {
        return 1.0; // both empty, lambda = 0: equal sets
    }
    (inter + lambda) / (union + lambda)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use selfemo_datasets::labels::MELD;

    fn set(names: &[&str]) -> Vec<Emotion> {
        names.iter().map(|n| MELD.parse(n).unwrap()).collect()
    }

    #[test]
    fn hand_worked_values() {
        let g = set(&["joy"]);
        assert_eq!(smoothed_iou(&set(&["joy"]), &g, 1.0), 1.0);
        assert_eq!(smoothed_iou(&set(&["joy", "surprise"]), &g, 1.0), 2.0 / 3.0); // (1+1)/(2+1)
        assert_eq!(smoothed_iou(&set(&["anger"]), &g, 1.0), 1.0 / 3.0); // (0+1)/(2+1)
        assert_eq!(smoothed_iou(&[], &g, 1.0), 0.0, "abstaining scores below a wrong guess (1/3)");
        assert_eq!(smoothed_iou(&g, &[], 1.0), 0.0);
        assert_eq!(smoothed_iou_with_invalid(&[], 1, &g, 1.0), 0.0, "only invalid words: no label, no credit");
        assert_eq!(soft_iou(&[], 0, &g, 1.0, &Similarity::valence_arousal(1.0)), 0.0);
        assert_eq!(smoothed_iou(&set(&["joy", "surprise"]), &g, 0.0), 0.5);
        assert_eq!(smoothed_iou(&[], &[], 0.0), 1.0);
        assert_eq!(smoothed_iou(&[], &g, 0.0), 0.0);
        assert_eq!(smoothed_iou_with_invalid(&set(&["joy"]), 1, &g, 1.0), 2.0 / 3.0); // joy + "bored"
    }

    fn any_set() -> impl Strategy<Value = Vec<Emotion>> {
        proptest::sample::subsequence(MELD.emotions().collect::<Vec<_>>(), 0..=7)
    }

    proptest! {
        #[test]
        fn symmetric_bounded_and_one_iff_equal(a in any_set(), b in any_set(), lambda in 0.01f64..5.0) {
            let x = smoothed_iou(&a, &b, lambda);
            prop_assert_eq!(x, smoothed_iou(&b, &a, lambda));
            prop_assert!(x <= 1.0);
            prop_assert_eq!(x == 0.0, a.is_empty() != b.is_empty(), "0 exactly when one side abstains");
            let same = a.len() == b.len() && a.iter().all(|e| b.contains(e));
            prop_assert_eq!(x == 1.0, same);
        }

        #[test]
        fn monotone_in_the_intersection(a in any_set(), b in any_set(), lambda in 0.0f64..5.0) {
            // Turning one element of B \ A into an element of A ∩ B (adding it to A) never lowers IoU_s.
            if let Some(e) = b.iter().find(|e| !a.contains(e)) {
                let mut a2 = a.clone();
                a2.push(*e);
                prop_assert!(smoothed_iou(&a2, &b, lambda) > smoothed_iou(&a, &b, lambda) - 1e-12);
            }
        }

        #[test]
        fn soft_iou_is_symmetric_bounded_and_identity_when_sim_is_crisp(a in any_set(), b in any_set(), lambda in 0.01f64..5.0) {
            let va = Similarity::valence_arousal(1.0);
            let x = soft_iou(&a, 0, &b, lambda, &va);
            prop_assert!((x - soft_iou(&b, 0, &a, lambda, &va)).abs() < 1e-12);
            prop_assert!(x <= 1.0 + 1e-12);
            prop_assert_eq!(x == 0.0, a.is_empty() != b.is_empty());
            prop_assert!(x >= smoothed_iou(&a, &b, lambda) - 1e-12, "soft credit never lowers the score");
            prop_assert!((soft_iou(&a, 0, &b, lambda, &Similarity::Exact) - smoothed_iou(&a, &b, lambda)).abs() < 1e-12);
        }
    }
}
