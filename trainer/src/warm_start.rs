//! The SFT warm start: a few steps of completion-only cross-entropy after the recogniser
//! prompt, on `{gold}</answer>` (kind `label`) or on self-written rationales that passed the
//! re-prediction check (kind `rationale`), so a small policy learns the contract and labels.

use crate::config::WarmStartSection;
use crate::loss::sft_loss;
use crate::recognition::RecognitionPrompt;
use burn::optim::{GradientsParams, ModuleOptimizer};
use selfemo_model::{CausalLm, TextTokenizer, completion_logprobs};

/// An SFT example: prompt ids and completion ids.
pub type Example = (Vec<u32>, Vec<u32>);

/// `text` and the end-of-turn token, as completion ids.
pub fn completion_ids(text: &str, tok: &TextTokenizer) -> Vec<u32> {
    let mut ids = tok.encode(text);
    ids.extend(tok.eos_ids.first());
    ids
}

/// The `label` example of a prompt: the gold label, `</answer>` and the end-of-turn token.
pub fn label_example(prompt: &RecognitionPrompt, tok: &TextTokenizer) -> Example {
    (prompt.ids.clone(), completion_ids(&format!("{}</answer>", prompt.gold), tok))
}

/// Runs `settings.steps` SFT steps over `examples` (cycled, `batch_size` per step); returns the
/// model and the loss of every step.
pub fn warm_start(
    mut model: CausalLm,
    optim: &mut ModuleOptimizer,
    examples: &[Example],
    tok: &TextTokenizer,
    settings: &WarmStartSection,
) -> anyhow::Result<(CausalLm, Vec<f64>)> {
    let mut losses = Vec::with_capacity(settings.steps);
    if examples.is_empty() {
        return Ok((model, losses));
    }
    for step in 0..settings.steps {
        let batch: Vec<&Example> = (0..settings.batch_size).map(|i| &examples[(step * settings.batch_size + i) % examples.len()]).collect();
        let prompts: Vec<Vec<u32>> = batch.iter().map(|e| e.0.clone()).collect();
        let completions: Vec<Vec<u32>> = batch.iter().map(|e| e.1.clone()).collect();
        let loss = sft_loss(completion_logprobs(&model, &prompts, &completions, tok.pad_id, 1.0));
        let value = loss.clone().into_scalar::<f32>() as f64;
        anyhow::ensure!(value.is_finite(), "warm start step {}: non-finite loss {value}", step + 1);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(settings.learning_rate, model, grads);
        losses.push(value);
    }
    Ok((model, losses))
}
