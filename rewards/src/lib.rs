//! What the SELF-EMO policy is rewarded for: pure functions, no tensors.
//!
//! - [`contract`]: the `<think>..</think><answer>..</answer>` contract and the format reward;
//! - [`iou`]: smoothed IoU (and the similarity-smoothed variant, with [`affect`]);
//! - [`explanation`]: the ERV explanation reward behind a [`explanation::Verifier`];
//! - [`consistency`]: group consistency C_i;
//! - [`total`]: weighted totals with a per-component breakdown, and the [`total::RewardConfig`];
//! - [`advantage`]: group-relative advantages (GRPO, Dr.GRPO).

pub mod advantage;
pub mod affect;
pub mod consistency;
pub mod contract;
pub mod explanation;
pub mod iou;
pub mod total;

pub use advantage::{GroupAdvantages, ScaleRewards, advantages};
pub use contract::{Parsed, parse};
pub use iou::smoothed_iou;
pub use total::{RewardBreakdown, RewardConfig, RewardWeights, score_expression, score_recognition_group};

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use selfemo_datasets::Dataset;

    proptest! {
        #[test]
        fn parsing_never_panics(s in ".*", tagged in "(<think>|</think>|<answer>|</answer>|joy|, |\\s|[a-z]{1,5}){0,12}") {
            for d in Dataset::ALL {
                let _ = crate::parse(&s, d.labels());
                let p = crate::parse(&tagged, d.labels());
                prop_assert!(p.well_formed || (p.labels.is_empty() && p.invalid.is_empty()), "a malformed completion predicts nothing");
            }
        }
    }
}
