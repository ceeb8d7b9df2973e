//! The burn model as a self-play [`Policy`]: prompts are chat-formatted by the tokenizer's
//! template with the reply prefix appended; generation is one batched, seeded pass (optionally
//! steered per row by emotion vectors); scoring shares the prompts' common prefix in the KV
//! cache ([`score_prompts`]).

use burn::tensor::Tensor;
use selfemo_datasets::Emotion;
use selfemo_model::generate::sample_each;
use selfemo_model::label_scores::score_prompts;
use selfemo_model::{CausalLm, EmotionVectors, Message, SamplingConfig, TextTokenizer, completion_logprobs};
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
    /// Emotion vectors for [`Policy::generate_toward`] (`None`: it samples unsteered).
    pub vectors: Option<&'a EmotionVectors>,
}

impl ModelPolicy<'_> {
    /// Samples `seeds[i].len()` completions of each prompt in one batch, steered per row by
    /// `steer` (`[rows, d]` per layer) when given.
    fn sample(&self, prompts: &[FilledPrompt], seeds: &[Vec<u64>], steer: Option<&[Tensor<2>]>) -> Vec<Vec<Completion>> {
        let encoded: Vec<Vec<u32>> = prompts.iter().map(|p| self.tok.encode(&render(self.tok, p))).collect();
        let generated = sample_each(self.model, &encoded, seeds, &self.sampling, &self.tok.eos_ids, self.tok.pad_id, steer);
        encoded
            .into_iter()
            .zip(generated)
            .map(|(prompt, gens)| {
                gens.into_iter()
                    .map(|g| Completion {
                        prompt: prompt.clone(),
                        text: self.tok.decode(&g.tokens, true),
                        truncated: !g.finished,
                        tokens: g.tokens,
                        logprobs: g.logprobs,
                        behaviour_logprobs: None,
                        entropies: g.entropies,
                    })
                    .collect()
            })
            .collect()
    }
}

impl Policy for ModelPolicy<'_> {
    fn prompt_len(&self, prompt: &FilledPrompt) -> usize {
        self.tok.encode(&render(self.tok, prompt)).len()
    }

    fn generate(&self, prompts: &[FilledPrompt], seeds: &[Vec<u64>]) -> Vec<Vec<Completion>> {
        self.sample(prompts, seeds, None)
    }

    fn generate_toward(&self, prompts: &[FilledPrompt], seeds: &[Vec<u64>], toward: &[Vec<(Emotion, f64)>]) -> Vec<Vec<Completion>> {
        let Some(vectors) = self.vectors else { return self.sample(prompts, seeds, None) };
        // One mixture per row; emotions without a vector (neutral) and α = 0 are unsteered rows.
        let mixture = |(e, alpha): &(Emotion, f64)| -> Vec<(String, f64)> {
            let known = vectors.emotions.iter().any(|x| x.eq_ignore_ascii_case(e.name()));
            if known && *alpha != 0.0 { vec![(e.name().to_string(), *alpha)] } else { Vec::new() }
        };
        let mixtures: Vec<Vec<(String, f64)>> = toward.iter().flatten().map(mixture).collect();
        if mixtures.iter().all(Vec::is_empty) {
            return self.sample(prompts, seeds, None);
        }
        let device = self.model.model.embed_tokens.weight.device();
        let steer = vectors.mix_rows(&mixtures, &device).expect("only emotions the file has are mixed");
        let mut out = self.sample(prompts, seeds, Some(&steer));
        // π_old of a steered sample is the unsteered policy: its log-probs are taken again, and
        // the steered ones it was drawn with are kept for the importance weight.
        let steered: Vec<&mut Completion> = out.iter_mut().flatten().zip(&mixtures).filter(|(_, m)| !m.is_empty()).map(|(c, _)| c).collect();
        let prompts: Vec<Vec<u32>> = steered.iter().map(|c| c.prompt.clone()).collect();
        let completions: Vec<Vec<u32>> = steered.iter().map(|c| c.tokens.clone()).collect();
        let lp = completion_logprobs(self.model, &prompts, &completions, self.tok.pad_id, self.sampling.logprob_temperature());
        let lp = lp.into_data().try_to_vec::<f32>().expect("log-probs are f32");
        let mut at = 0;
        for c in steered {
            let unsteered = lp[at..at + c.tokens.len()].iter().map(|x| f64::from(*x)).collect();
            c.behaviour_logprobs = Some(std::mem::replace(&mut c.logprobs, unsteered));
            at += c.tokens.len();
        }
        out
    }

    fn score(&self, prompts: &[FilledPrompt], labels: &[&str]) -> Vec<Vec<f64>> {
        let ids: Vec<Vec<u32>> = prompts.iter().map(|p| self.tok.encode(&render(self.tok, p))).collect();
        let labels: Vec<Vec<u32>> = labels.iter().map(|l| self.tok.encode(l)).collect();
        score_prompts(self.model, &ids, &labels, self.score_rows)
    }
}
