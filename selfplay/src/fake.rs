//! A scripted policy for tests of the rollout and flywheel logic: its completions and label
//! scores come from closures, its tokens are the text's bytes.

use crate::policy::{Completion, Policy};
use crate::prompts::FilledPrompt;

/// Completions from `reply(prompt, seed)`; label scores from `score(prompt, label)`.
pub struct ScriptedPolicy<R, S> {
    /// The completion text for a prompt and sampling seed.
    pub reply: R,
    /// The log-prob of a label after a prompt.
    pub score: S,
}

fn bytes(text: &str) -> Vec<u32> {
    text.bytes().map(u32::from).collect()
}

impl<R, S> Policy for ScriptedPolicy<R, S>
where
    R: Fn(&FilledPrompt, u64) -> String,
    S: Fn(&FilledPrompt, &str) -> f64,
{
    fn prompt_len(&self, prompt: &FilledPrompt) -> usize {
        prompt.system.len() + prompt.user.len() + prompt.reply_prefix.len()
    }

    fn generate(&self, prompts: &[FilledPrompt], seeds: &[Vec<u64>]) -> Vec<Vec<Completion>> {
        prompts
            .iter()
            .zip(seeds)
            .map(|(p, seeds)| {
                seeds
                    .iter()
                    .map(|&seed| {
                        let text = (self.reply)(p, seed);
                        let tokens = bytes(&text);
                        Completion {
                            prompt: bytes(&format!("{}{}{}", p.system, p.user, p.reply_prefix)),
                            logprobs: vec![-1.0; tokens.len()],
                            behaviour_logprobs: None,
                            entropies: vec![1.0; tokens.len()],
                            tokens,
                            text,
                            truncated: false,
                        }
                    })
                    .collect()
            })
            .collect()
    }

    fn score(&self, prompts: &[FilledPrompt], labels: &[&str]) -> Vec<Vec<f64>> {
        prompts.iter().map(|p| labels.iter().map(|l| (self.score)(p, l)).collect()).collect()
    }
}
