//! The policy as the rollout logic sees it: it samples completions of filled prompts and scores
//! candidate label words after a prompt. The burn model implements it in the trainer; tests use
//! [`crate::fake::ScriptedPolicy`].

use crate::prompts::FilledPrompt;
use selfemo_datasets::Emotion;
use serde::{Deserialize, Serialize};

/// One sampled completion of a prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// The prompt's token ids (chat-formatted, reply prefix included).
    pub prompt: Vec<u32>,
    /// Generated token ids (end-of-turn included when produced).
    pub tokens: Vec<u32>,
    /// The generated text, without the reply prefix and special tokens.
    pub text: String,
    /// log π_old per generated token (the unsteered policy's, even for a steered sample).
    pub logprobs: Vec<f64>,
    /// log π_steer per generated token when a steered policy drew the sample (`None`: π_old
    /// drew it): the update weighs such tokens by min(π_old/π_steer, C).
    pub behaviour_logprobs: Option<Vec<f64>>,
    /// Entropy of π_old per generated token.
    pub entropies: Vec<f64>,
    /// Cut at the length limit without an end-of-turn token.
    pub truncated: bool,
}

/// What self-play needs from a policy. One model plays every role; roles differ only by prompt.
pub trait Policy {
    /// Length of a filled prompt in tokens (for fitting prompts to the context budget).
    fn prompt_len(&self, prompt: &FilledPrompt) -> usize;

    /// Samples, in one batched pass, `seeds[i].len()` completions of `prompts[i]`, the j-th
    /// drawn with seed `seeds[i][j]`.
    fn generate(&self, prompts: &[FilledPrompt], seeds: &[Vec<u64>]) -> Vec<Vec<Completion>>;

    /// Like [`Policy::generate`], with sample j of prompt i steered toward emotion
    /// `toward[i][j].0` with strength α = `toward[i][j].1` (activation steering; α = 0 is no
    /// steering). `logprobs` are the unsteered policy's (π_old) and `behaviour_logprobs` the
    /// steered policy's that drew the sample. A policy without emotion vectors samples
    /// unsteered (the default).
    fn generate_toward(&self, prompts: &[FilledPrompt], seeds: &[Vec<u64>], toward: &[Vec<(Emotion, f64)>]) -> Vec<Vec<Completion>> {
        let _ = toward;
        self.generate(prompts, seeds)
    }

    /// log π(label | prompt) of every candidate in `labels` for every prompt (`[prompt][label]`),
    /// the prompt's reply prefix ending where the label goes (score mode).
    fn score(&self, prompts: &[FilledPrompt], labels: &[&str]) -> Vec<Vec<f64>>;
}

/// The per-sample sampling seed: a hash of (run seed, step, prompt id, sample index), so a
/// rollout does not depend on batch order and a resumed run draws the same samples.
pub fn sample_seed(seed: u64, step: u64, prompt_id: u64, sample: u64) -> u64 {
    [step, prompt_id, sample].into_iter().fold(splitmix(seed), |h, x| splitmix(h ^ splitmix(x)))
}

/// SplitMix64's finaliser: a fast, well-mixed 64-bit hash step.
pub fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
