//! Group-relative advantages (GRPO; Shao et al., DeepSeekMath 2024).
//!
//! Â_i = (r_i − mean_j r_j) / (std_j r_j + ε), shared by every token of sample i. With
//! [`ScaleRewards::None`] the division is skipped (Dr.GRPO; Liu et al., 2025). std is the
//! population standard deviation (ddof = 0), so the advantages of a group have unit std up to
//! ε; TRL's `torch.std` uses ddof = 1, which scales them by sqrt((G−1)/G). A degenerate group
//! (all rewards equal) carries no signal: its advantages are all exactly 0.

use serde::{Deserialize, Serialize};

/// How rewards are scaled, with TRL's `scale_rewards` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleRewards {
    /// Divide by the group's std (GRPO; TRL default).
    #[default]
    Group,
    /// Divide by the std of the whole batch (Hu et al., REINFORCE++-style).
    Batch,
    /// No division (Dr.GRPO).
    None,
}

/// A group's advantages, with whether the group was degenerate.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupAdvantages {
    /// Â_i per sample, in the group's sample order.
    pub values: Vec<f64>,
    /// All rewards equal: the values are all 0.
    pub degenerate: bool,
}

/// Rewards of one group are "equal" within this absolute tolerance.
const EQUAL: f64 = 1e-12;

/// Advantages for a batch of groups (`groups[g][i]` = reward of sample i of group g).
///
/// Non-finite rewards are a caller bug; they are reported as an error naming the group.
pub fn advantages(groups: &[Vec<f64>], scale: ScaleRewards, eps: f64) -> Result<Vec<GroupAdvantages>, String> {
    for (g, r) in groups.iter().enumerate() {
        if let Some(i) = r.iter().position(|x| !x.is_finite()) {
            return Err(format!("group {g}: reward of sample {i} is {}", r[i]));
        }
    }
    let batch_std = {
        let all: Vec<f64> = groups.iter().flatten().copied().collect();
        mean_std(&all).1
    };
    Ok(groups
        .iter()
        .map(|r| {
            let (mean, std) = mean_std(r);
            let degenerate = r.iter().all(|x| (x - r[0]).abs() <= EQUAL);
            let denom = match scale {
                ScaleRewards::Group => std + eps,
                ScaleRewards::Batch => batch_std + eps,
                ScaleRewards::None => 1.0,
            };
            let values = if degenerate { vec![0.0; r.len()] } else { r.iter().map(|x| (x - mean) / denom).collect() };
            GroupAdvantages { values, degenerate }
        })
        .collect())
}

/// Mean and population std by two passes (stable for large offsets); (0, 0) when empty.
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hand_worked() {
        let a = advantages(&[vec![1.0, 0.0, 0.0, 1.0]], ScaleRewards::Group, 0.0).unwrap();
        assert_eq!(a[0].values, [1.0, -1.0, -1.0, 1.0]);
        let a = advantages(&[vec![1.0, 0.0]], ScaleRewards::None, 1e-4).unwrap();
        assert_eq!(a[0].values, [0.5, -0.5]);
        let a = advantages(&[vec![0.7], vec![2.0, 2.0, 2.0]], ScaleRewards::Group, 1e-4).unwrap();
        assert!(a.iter().all(|g| g.degenerate && g.values.iter().all(|v| *v == 0.0)));
        // Batch scaling: group means, batch std (of [0, 2, 0, 4] = 1.6583).
        let a = advantages(&[vec![0.0, 2.0], vec![0.0, 4.0]], ScaleRewards::Batch, 0.0).unwrap();
        let s = 2.75f64.sqrt();
        assert!((a[0].values[1] - 1.0 / s).abs() < 1e-12 && (a[1].values[1] - 2.0 / s).abs() < 1e-12);
        assert!(advantages(&[vec![1.0, f64::NAN]], ScaleRewards::Group, 1e-4).unwrap_err().contains("group 0"));
    }

    proptest! {
        #[test]
        fn zero_mean_unit_std_or_all_zero(r in proptest::collection::vec(-1e3f64..1e3, 1..32), offset in -1e3f64..1e3) {
            let shifted: Vec<f64> = r.iter().map(|x| x + offset).collect();
            let a = &advantages(std::slice::from_ref(&shifted), ScaleRewards::Group, 1e-8).unwrap()[0];
            prop_assert_eq!(a.values.len(), r.len());
            prop_assert!(a.values.iter().all(|v| v.is_finite()));
            let (_, rs) = mean_std(&shifted);
            if a.degenerate {
                prop_assert!(a.values.iter().all(|v| *v == 0.0));
            } else if rs > 1e-3 {
                let (m, s) = mean_std(&a.values);
                prop_assert!(m.abs() < 1e-9, "mean {}", m);
                prop_assert!((s - rs / (rs + 1e-8)).abs() < 1e-9, "std {}", s);
                prop_assert!((s - 1.0).abs() < 1e-5);
            }
        }
    }
}
