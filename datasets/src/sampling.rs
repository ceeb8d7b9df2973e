//! Drawing a pool's items by gold label: in their natural proportions, balanced over the
//! labels, or in between (√ of each label's count). Runs use it for warm-start examples, GRPO
//! prompts and the flywheel's replay.

use crate::Emotion;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// How a use draws its targets from its pool, by gold label [RECON: the paper does not say].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelSampling {
    /// The pool in its (shuffled) order: labels in their natural proportions (MELD train is
    /// 47% neutral).
    #[default]
    Natural,
    /// Each draw's label uniform over the labels present: every class equally often.
    Balanced,
    /// Each draw's label with probability ∝ √n_c: between the two (a common compromise for
    /// long-tailed classes, e.g. Mahajan et al. 2018).
    Sqrt,
}

/// `count` indices into `labels` (the gold labels of a pool, in pool order): `natural` takes
/// the pool in order, cycling; `balanced` and `sqrt` pick each draw's label at random (seeded)
/// with their probabilities, then that label's next target in pool order, cycling within it.
pub fn draw(labels: &[Emotion], count: usize, sampling: LabelSampling, seed: u64) -> Vec<usize> {
    if labels.is_empty() {
        return Vec::new();
    }
    let mut classes: Vec<(Emotion, Vec<usize>)> = Vec::new();
    for (i, e) in labels.iter().enumerate() {
        match classes.iter_mut().find(|(c, _)| c == e) {
            Some((_, members)) => members.push(i),
            None => classes.push((*e, vec![i])),
        }
    }
    let weight = |n: usize| match sampling {
        LabelSampling::Natural => n as f64,
        LabelSampling::Balanced => 1.0,
        LabelSampling::Sqrt => (n as f64).sqrt(),
    };
    if sampling == LabelSampling::Natural {
        return (0..count).map(|i| i % labels.len()).collect();
    }
    let weights: Vec<f64> = classes.iter().map(|(_, m)| weight(m.len())).collect();
    let total: f64 = weights.iter().sum();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut next = vec![0usize; classes.len()];
    (0..count)
        .map(|_| {
            let mut u = rng.random::<f64>() * total;
            let c = weights.iter().position(|w| {
                u -= w;
                u < 0.0
            });
            let c = c.unwrap_or(classes.len() - 1);
            let members = &classes[c].1;
            let i = members[next[c] % members.len()];
            next[c] += 1;
            i
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::MELD;

    fn pool() -> Vec<Emotion> {
        // 16 neutral, 4 joy, 1 fear: a long tail
        let e = |n: &str| MELD.parse(n).unwrap();
        let mut v = vec![e("neutral"); 16];
        v.splice(3..3, vec![e("joy"); 4]);
        v.push(e("fear"));
        v
    }

    #[test]
    fn natural_sampling_is_the_pool_in_order() {
        assert_eq!(draw(&pool(), 23, LabelSampling::Natural, 0), (0..21).chain(0..2).collect::<Vec<_>>());
    }

    #[test]
    fn balanced_and_sqrt_sampling_follow_their_label_shares() {
        let p = pool();
        let share = |sampling, label: &str| {
            let d = draw(&p, 21_000, sampling, 7);
            d.iter().filter(|i| p[**i].name() == label).count() as f64 / d.len() as f64
        };
        for label in ["neutral", "joy", "fear"] {
            assert!((share(LabelSampling::Balanced, label) - 1.0 / 3.0).abs() < 0.015, "{label}");
        }
        // √16 : √4 : √1 = 4 : 2 : 1
        assert!((share(LabelSampling::Sqrt, "neutral") - 4.0 / 7.0).abs() < 0.015);
        assert!((share(LabelSampling::Sqrt, "fear") - 1.0 / 7.0).abs() < 0.015);
        // Within a label, the pool order, cycling: fear (index 20) is drawn every time.
        let d = draw(&p, 30, LabelSampling::Balanced, 1);
        let joys: Vec<usize> = d.iter().copied().filter(|i| p[*i].name() == "joy").collect();
        assert!(joys.len() >= 5 && joys[..5] == [3, 4, 5, 6, 3], "{joys:?}");
        assert_eq!(draw(&p, 30, LabelSampling::Balanced, 1), d, "seeded");
        assert!(draw(&[], 5, LabelSampling::Sqrt, 1).is_empty());
    }
}
