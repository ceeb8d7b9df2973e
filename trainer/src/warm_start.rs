//! The SFT warm start: a few steps of completion-only cross-entropy on `{gold}</answer>` after
//! the recogniser prompt, so a small policy learns to close the contract with a label.

use crate::config::WarmStartSection;
use crate::loss::sft_loss;
use crate::recognition::RecognitionPrompt;
use burn::optim::{GradientsParams, ModuleOptimizer};
use selfemo_model::{CausalLm, TextTokenizer, completion_logprobs};

/// The SFT completion of a prompt: the gold label, `</answer>` and the end-of-turn token.
pub fn completion(prompt: &RecognitionPrompt, tok: &TextTokenizer) -> Vec<u32> {
    let mut ids = tok.encode(&format!("{}</answer>", prompt.gold));
    ids.extend(tok.eos_ids.first());
    ids
}

/// Runs `settings.steps` SFT steps over `examples` (cycled, `batch_size` per step); returns the
/// model and the loss of every step.
pub fn warm_start(
    mut model: CausalLm,
    optim: &mut ModuleOptimizer,
    examples: &[RecognitionPrompt],
    tok: &TextTokenizer,
    settings: &WarmStartSection,
) -> anyhow::Result<(CausalLm, Vec<f64>)> {
    let mut losses = Vec::with_capacity(settings.steps);
    if examples.is_empty() {
        return Ok((model, losses));
    }
    for step in 0..settings.steps {
        let batch: Vec<&RecognitionPrompt> = (0..settings.batch_size).map(|i| &examples[(step * settings.batch_size + i) % examples.len()]).collect();
        let prompts: Vec<Vec<u32>> = batch.iter().map(|p| p.ids.clone()).collect();
        let completions: Vec<Vec<u32>> = batch.iter().map(|p| completion(p, tok)).collect();
        let loss = sft_loss(completion_logprobs(&model, &prompts, &completions, tok.pad_id, 1.0));
        let value = loss.clone().into_scalar::<f32>() as f64;
        anyhow::ensure!(value.is_finite(), "warm start step {}: non-finite loss {value}", step + 1);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(settings.learning_rate, model, grads);
        losses.push(value);
    }
    Ok((model, losses))
}
