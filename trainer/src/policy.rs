//! The burn model as a self-play [`Policy`]: prompts are chat-formatted by the tokenizer's
//! template with the reply prefix appended; generation is one batched, seeded pass; scoring
//! shares the prompts' common prefix in the KV cache ([`score_prompts`]).

use crate::label_scoring::score_prompts;
use selfemo_model::{CausalLm, Message, SamplingConfig, TextTokenizer, generate};
use selfemo_selfplay::{Completion, FilledPrompt, Policy};

/// The chat text of a filled prompt: system and user messages, then the reply prefix.
pub fn render(tok: &TextTokenizer, p: &FilledPrompt) -> String {
    let chat = tok.chat_prompt(&[Message::new("system", &p.system), Message::new("user", &p.user)]);
    format!("{chat}{}", p.reply_prefix)
}

/// A model, its tokenizer and how it samples.
pub struct ModelPolicy<'a> {
    /// The policy (no autodiff needed).
    pub model: &'a CausalLm,
    /// Its tokenizer.
    pub tok: &'a TextTokenizer,
    /// Sampling settings of rollouts.
    pub sampling: SamplingConfig,
    /// Prompts scored per tree pass.
    pub score_rows: usize,
}

impl Policy for ModelPolicy<'_> {
    fn prompt_len(&self, prompt: &FilledPrompt) -> usize {
        self.tok.encode(&render(self.tok, prompt)).len()
    }

    fn generate(&self, prompts: &[FilledPrompt], seeds: &[Vec<u64>]) -> Vec<Vec<Completion>> {
        let encoded: Vec<Vec<u32>> = prompts.iter().map(|p| self.tok.encode(&render(self.tok, p))).collect();
        let rows: Vec<Vec<u32>> = encoded.iter().zip(seeds).flat_map(|(ids, s)| std::iter::repeat_n(ids.clone(), s.len())).collect();
        let flat_seeds: Vec<u64> = seeds.iter().flatten().copied().collect();
        if rows.is_empty() {
            return seeds.iter().map(|_| Vec::new()).collect();
        }
        let mut gens = generate(self.model, &rows, &self.sampling, &flat_seeds, &self.tok.eos_ids, self.tok.pad_id, None).into_iter();
        encoded
            .into_iter()
            .zip(seeds)
            .map(|(prompt, s)| {
                (0..s.len())
                    .map(|_| {
                        let g = gens.next().expect("one generation per seed");
                        Completion {
                            prompt: prompt.clone(),
                            text: self.tok.decode(&g.tokens, true),
                            truncated: !g.finished,
                            tokens: g.tokens,
                            logprobs: g.logprobs,
                            entropies: g.entropies,
                        }
                    })
                    .collect()
            })
            .collect()
    }

    fn score(&self, prompts: &[FilledPrompt], labels: &[&str]) -> Vec<Vec<f64>> {
        let ids: Vec<Vec<u32>> = prompts.iter().map(|p| self.tok.encode(&render(self.tok, p))).collect();
        let labels: Vec<Vec<u32>> = labels.iter().map(|l| self.tok.encode(l)).collect();
        score_prompts(self.model, &ids, &labels, self.score_rows)
    }
}
