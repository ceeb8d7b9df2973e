//! How a run divides its train targets: the GRPO prompts, the reserve that dynamic sampling
//! refills degenerate groups from, and the warm start's SFT examples, as disjoint consecutive
//! slices of one seeded shuffle, so no prompt trained on with its gold label returns as an RL
//! prompt and no refill repeats a prompt the steps use.

use std::ops::Range;

/// Disjoint index ranges into the shuffled train targets, in this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainSplits {
    /// Targets the GRPO steps cycle through.
    pub grpo: Range<usize>,
    /// Fresh targets for refilling degenerate groups.
    pub reserve: Range<usize>,
    /// Targets of the warm start's SFT examples.
    pub warm_start: Range<usize>,
}

impl TrainSplits {
    /// The first `grpo` of `n` targets, then `reserve`, then `warm_start`, each cut short (to
    /// empty at worst) when the targets run out.
    pub fn new(n: usize, grpo: usize, reserve: usize, warm_start: usize) -> Self {
        let mut at = 0;
        let mut take = |k: usize| {
            let r = at..(at + k).min(n);
            at = r.end;
            r
        };
        Self { grpo: take(grpo), reserve: take(reserve), warm_start: take(warm_start) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn consecutive_slices_in_order() {
        assert_eq!(TrainSplits::new(100, 48, 48, 128), TrainSplits { grpo: 0..48, reserve: 48..96, warm_start: 96..100 });
        assert_eq!(TrainSplits::new(10, 4, 0, 3), TrainSplits { grpo: 0..4, reserve: 4..4, warm_start: 4..7 });
        assert_eq!(TrainSplits::new(3, 4, 2, 2), TrainSplits { grpo: 0..3, reserve: 3..3, warm_start: 3..3 });
    }

    proptest! {
        #[test]
        fn the_splits_never_overlap(n in 0usize..500, g in 0usize..300, r in 0usize..300, w in 0usize..300) {
            let s = TrainSplits::new(n, g, r, w);
            let all: Vec<usize> = s.grpo.clone().chain(s.reserve.clone()).chain(s.warm_start.clone()).collect();
            prop_assert!(all.windows(2).all(|p| p[0] < p[1]), "strictly increasing, so disjoint: {:?}", s);
            prop_assert!(all.iter().all(|i| *i < n));
            prop_assert_eq!(s.grpo.len(), g.min(n));
        }
    }
}
