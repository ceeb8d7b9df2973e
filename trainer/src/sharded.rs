//! A [`Policy`] spread over the ranks of a run: each call's prompts are split into contiguous
//! shares ([`share`]), each rank samples (or scores) only its own, and the results are
//! gathered so that every rank returns the whole batch, in order, as one process would. A
//! prompt's G samples stay on one rank (a group never spans ranks) and every sample keeps its
//! own seed, so the rollouts do not depend on how many ranks drew them.

use crate::collective::{Collective, gather_concat, share};
use selfemo_datasets::Emotion;
use selfemo_selfplay::{Completion, FilledPrompt, Policy};

/// `inner` on this rank's share of every call, gathered over `collective`.
pub struct Sharded<'a> {
    /// The policy of this rank.
    pub inner: &'a dyn Policy,
    /// The ranks.
    pub collective: &'a dyn Collective,
}

impl Sharded<'_> {
    fn spread<T: serde::Serialize + serde::de::DeserializeOwned>(&self, n: usize, run: impl FnOnce(std::ops::Range<usize>) -> Vec<T>) -> Vec<T> {
        let c = self.collective;
        if c.size() == 1 {
            return run(0..n);
        }
        let mine = share(n, c.rank(), c.size());
        let local = if mine.is_empty() { Vec::new() } else { run(mine) };
        gather_concat(c, local)
    }
}

impl Policy for Sharded<'_> {
    fn prompt_len(&self, prompt: &FilledPrompt) -> usize {
        self.inner.prompt_len(prompt)
    }

    fn generate(&self, prompts: &[FilledPrompt], seeds: &[Vec<u64>]) -> Vec<Vec<Completion>> {
        self.spread(prompts.len(), |r| self.inner.generate(&prompts[r.clone()], &seeds[r]))
    }

    fn generate_toward(&self, prompts: &[FilledPrompt], seeds: &[Vec<u64>], toward: &[Vec<(Emotion, f64)>]) -> Vec<Vec<Completion>> {
        self.spread(prompts.len(), |r| self.inner.generate_toward(&prompts[r.clone()], &seeds[r.clone()], &toward[r]))
    }

    fn score(&self, prompts: &[FilledPrompt], labels: &[&str]) -> Vec<Vec<f64>> {
        self.spread(prompts.len(), |r| self.inner.score(&prompts[r], labels))
    }
}
