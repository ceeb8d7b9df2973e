//! How a run divides and draws its train targets. The seeded shuffle of the train targets is cut
//! into disjoint pools, one per use: the GRPO prompts, the reserve that dynamic sampling refills
//! degenerate groups from, and the warm start's SFT examples (so no prompt trained on with its
//! gold label returns as an RL prompt, and no refill repeats a prompt the steps use). Each use
//! then draws its targets from its own pool by label ([`LabelSampling`]).

use crate::config::RunConfig;
use crate::grpo::DegenerateGroups;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use selfemo_datasets::sampling::{LabelSampling, draw};
use selfemo_datasets::{Corpus, Emotion, Split, Target};
use selfemo_selfplay::RecognitionItem;
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// What a run trains on: the GRPO prompts (cycled by the steps), the refill reserve, and the
/// warm start's targets, drawn from disjoint pools of the train split.
#[derive(Debug, Clone)]
pub struct TrainData {
    /// GRPO recognition items with their targets, in the order the steps use them.
    pub real: Vec<(Target, RecognitionItem)>,
    /// Fresh items for dynamic sampling (empty unless `degenerate_groups = "resample"`).
    pub reserve: Vec<RecognitionItem>,
    /// The warm start's targets, in training order.
    pub warm_start: Vec<Target>,
}

impl TrainData {
    /// The data of `config` on `corpus`: a seeded shuffle of the train targets (the first
    /// `train_limit` of it when set), cut into pools and drawn from by label.
    pub fn new(config: &RunConfig, corpus: &Corpus) -> Result<Self, String> {
        let mut targets = corpus.targets(Split::Train);
        if targets.is_empty() {
            return Err(format!("{} has no labelled train utterances", corpus.dataset));
        }
        targets.shuffle(&mut rand::rngs::StdRng::seed_from_u64(config.seed));
        if config.data.train_limit > 0 {
            targets.truncate(config.data.train_limit);
        }
        let (g, ws) = (&config.grpo, &config.warm_start);
        let needed = g.max_steps * g.prompts_per_step;
        let reserve_size = if g.degenerate_groups == DegenerateGroups::Resample { needed } else { 0 };
        let splits = TrainSplits::new(targets.len(), needed, reserve_size, ws.steps * ws.batch_size);
        let label = |t: &Target| corpus.dialogues[t.dialogue].utterances[t.turn].label.expect("train targets are labelled");
        let pick = |pool: &Range<usize>, count: usize, sampling: LabelSampling, salt: u64| -> Vec<Target> {
            let pool = &targets[pool.clone()];
            let labels: Vec<Emotion> = pool.iter().map(label).collect();
            draw(&labels, count, sampling, config.seed ^ salt).into_iter().map(|i| pool[i]).collect()
        };
        let w = config.data.context_span();
        let items = |ts: Vec<Target>, first_id: usize| -> Vec<(Target, RecognitionItem)> {
            ts.into_iter().enumerate().filter_map(|(k, t)| RecognitionItem::from_target(corpus, t, w, (first_id + k) as u64).map(|i| (t, i))).collect()
        };
        let sampling = config.data.label_sampling;
        let real = items(pick(&splits.grpo, needed, sampling, 1), 0);
        if needed > 0 && real.is_empty() {
            return Err(format!(
                "grpo.max_steps = {} needs prompts, but no train target of {} ({} after data.train_limit) fits a prompt",
                g.max_steps,
                corpus.dataset,
                targets.len()
            ));
        }
        Ok(Self {
            real,
            reserve: items(pick(&splits.reserve, reserve_size, sampling, 2), needed).into_iter().map(|(_, i)| i).collect(),
            warm_start: match ws.batching {
                Batching::Random => pick(&splits.warm_start, ws.steps * ws.batch_size, ws.label_sampling, 3),
                Batching::Dialogue => by_dialogue(&targets[splits.warm_start.clone()], ws.steps * ws.batch_size),
            },
        })
    }
}

/// Disjoint index ranges into the shuffled train targets, in this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainSplits {
    /// The pool the GRPO steps draw their prompts from.
    pub grpo: Range<usize>,
    /// The pool degenerate groups are refilled from.
    pub reserve: Range<usize>,
    /// The pool of the warm start's SFT examples.
    pub warm_start: Range<usize>,
}

impl TrainSplits {
    /// Pools for `grpo`, `reserve` and `warm_start` draws out of `n` targets. When the draws
    /// fit in `n`, each pool is a share of the `n` targets proportional to its draws (a use
    /// without draws gets no pool), so minority labels have as many targets as the split
    /// allows when drawing by label. When they do not (a warm start bounded by minutes asks
    /// for far more than the split holds), the pools are a max-min fair cut of `n`: the
    /// smaller uses get their draws, or an equal share when even that does not fit, and the
    /// largest the rest, so no use with draws is left without a pool while `n` holds one
    /// target per use.
    pub fn new(n: usize, grpo: usize, reserve: usize, warm_start: usize) -> Self {
        let draws = [grpo, reserve, warm_start];
        let total: usize = draws.iter().sum();
        let sizes = if total <= n { proportional(n, draws) } else { max_min_fair(n, draws) };
        let (a, b) = (sizes[0], sizes[0] + sizes[1]);
        Self { grpo: 0..a, reserve: a..b, warm_start: b..b + sizes[2] }
    }
}

/// Shares of `n` proportional to `draws` (their sum at most `n`), cut at the cumulative
/// draws; the warm start, when it has draws, takes the rounding remainder.
fn proportional(n: usize, [grpo, reserve, warm_start]: [usize; 3]) -> [usize; 3] {
    let total = (grpo + reserve + warm_start).max(1);
    let cut = |draws: usize| draws * n / total;
    let (a, b) = (cut(grpo), cut(grpo + reserve));
    let end = if warm_start > 0 { n } else { b };
    [a, b - a, end - b]
}

/// Water-filling: in increasing order of draws, each use gets its draws or an equal share of
/// what is left, whichever is smaller (uses without draws get nothing).
fn max_min_fair(n: usize, draws: [usize; 3]) -> [usize; 3] {
    let mut order: Vec<usize> = (0..3).filter(|&i| draws[i] > 0).collect();
    order.sort_by_key(|&i| draws[i]);
    let (mut sizes, mut left) = ([0; 3], n);
    for (k, &i) in order.iter().enumerate() {
        sizes[i] = draws[i].min(left / (order.len() - k));
        left -= sizes[i];
    }
    sizes
}

/// How SFT examples are ordered into batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Batching {
    /// Drawn one by one (by `label_sampling`): independent examples per batch.
    #[default]
    Random,
    /// The pool's dialogues in a seeded order, each one's targets in turn order, so that a
    /// batch holds the targets of one or two dialogues and its prefix tree runs their shared
    /// lines once (labels in their natural proportions).
    Dialogue,
}

/// `count` targets of `pool` (a shuffled slice), dialogue after dialogue in the order their
/// first target appears, each dialogue's targets by turn, cycled.
pub fn by_dialogue(pool: &[Target], count: usize) -> Vec<Target> {
    let mut dialogues: Vec<usize> = Vec::new();
    for t in pool {
        if !dialogues.contains(&t.dialogue) {
            dialogues.push(t.dialogue);
        }
    }
    let rank: std::collections::HashMap<usize, usize> = dialogues.iter().enumerate().map(|(r, d)| (*d, r)).collect();
    let mut ordered = pool.to_vec();
    ordered.sort_by_key(|t| (rank[&t.dialogue], t.turn));
    (0..count).filter(|_| !ordered.is_empty()).map(|i| ordered[i % ordered.len()]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pools_are_proportional_to_their_draws() {
        assert_eq!(TrainSplits::new(400, 48, 48, 104), TrainSplits { grpo: 0..96, reserve: 96..192, warm_start: 192..400 });
        assert_eq!(TrainSplits::new(10, 4, 0, 0), TrainSplits { grpo: 0..10, reserve: 10..10, warm_start: 10..10 });
        assert_eq!(TrainSplits::new(1000, 48, 0, 128), TrainSplits { grpo: 0..272, reserve: 272..272, warm_start: 272..1000 });
    }

    #[test]
    fn a_warm_start_bounded_by_minutes_leaves_the_grpo_prompts_their_pool() {
        // MELD train, 20 GRPO steps of 4 prompts, a warm start of 100000 batches of 8.
        assert_eq!(TrainSplits::new(9989, 80, 0, 800_000), TrainSplits { grpo: 0..80, reserve: 80..80, warm_start: 80..9989 });
        assert_eq!(TrainSplits::new(100, 80, 80, 800_000), TrainSplits { grpo: 0..33, reserve: 33..66, warm_start: 66..100 });
        assert_eq!(TrainSplits::new(100, 20, 48, 104), TrainSplits { grpo: 0..20, reserve: 20..60, warm_start: 60..100 });
    }

    proptest! {
        #[test]
        fn pools_never_overlap_and_hold_their_draws_when_they_fit(n in 0usize..5000, g in 0usize..300, r in 0usize..300, w in 0usize..300) {
            let s = TrainSplits::new(n, g, r, w);
            let all: Vec<usize> = s.grpo.clone().chain(s.reserve.clone()).chain(s.warm_start.clone()).collect();
            prop_assert!(all.windows(2).all(|p| p[0] < p[1]), "strictly increasing, so disjoint: {:?}", s);
            prop_assert!(all.iter().all(|i| *i < n));
            if g + r + w <= n {
                prop_assert!(s.grpo.len() >= g && s.reserve.len() >= r && s.warm_start.len() >= w, "{:?}", s);
            }
            let uses = [g, r, w].iter().filter(|d| **d > 0).count();
            if n >= uses {
                for (pool, d) in [(&s.grpo, g), (&s.reserve, r), (&s.warm_start, w)] {
                    prop_assert!(d == 0 || !pool.is_empty(), "a use with draws has a pool: {:?}", s);
                }
            }
        }
    }

    #[test]
    fn dialogue_batching_keeps_each_dialogue_together_in_turn_order() {
        let t = |dialogue, turn| Target { dialogue, turn };
        let pool = [t(5, 2), t(1, 0), t(5, 0), t(1, 3), t(9, 1), t(5, 1)];
        assert_eq!(by_dialogue(&pool, 8), [t(5, 0), t(5, 1), t(5, 2), t(1, 0), t(1, 3), t(9, 1), t(5, 0), t(5, 1)]);
        assert!(by_dialogue(&[], 3).is_empty());
    }
}
