//! Steered responder sampling on the real default model (2 layers): α = 0 and emotions without
//! a vector sample as unsteered; α ≠ 0 changes the samples; a steered sample records both the
//! unsteered policy's log-probs (π_old, checked against a full unpadded forward pass) and the
//! steered policy's that drew it (the update's importance weight needs both).

use burn::tensor::{Int, Tensor, TensorData, activation};
use selfemo_datasets::Dataset;
use selfemo_eval::policy::ModelPolicy;
use selfemo_model::steering::QUERIES;
use selfemo_model::{CausalLm, EmotionVectors, LoadOptions, LoadedModel, ModelSource, SamplingConfig};
use selfemo_selfplay::{FilledPrompt, Policy};

#[test]
fn steering_changes_samples_but_not_the_recorded_policy() {
    let Some(path) = selfemo_model::fetch::default_model_for_tests() else { return };
    let device = burn::tensor::Device::flex();
    let m = LoadedModel::load(&ModelSource::Gguf(path), LoadOptions { max_layers: Some(2), ..Default::default() }, &device).unwrap();
    let vectors = EmotionVectors::extract(&m.model, &m.tokenizer, "smollm2-2-layers", &["joy", "anger"], &QUERIES[..4]);
    let sampling = SamplingConfig { temperature: 1.0, top_p: 1.0, top_k: 0, max_new_tokens: 8 };
    let policy = ModelPolicy { model: &m.model, tok: &m.tokenizer, sampling, score_rows: 8, vectors: Some(&vectors) };
    let prompts =
        [FilledPrompt { system: "You continue conversations.".into(), user: "A: I got the job!\n\nWrite B's next line.".into(), reply_prefix: String::new() }];
    let seeds = [vec![1, 2, 3]];
    let labels = Dataset::Meld.labels();
    let (joy, neutral) = (labels.parse("joy").unwrap(), labels.parse("neutral").unwrap());
    let plain = policy.generate(&prompts, &seeds);
    let same = policy.generate_toward(&prompts, &seeds, &[vec![(joy, 0.0), (neutral, 8.0), (joy, 0.0)]]);
    assert_eq!(same, plain, "alpha = 0 and an emotion without a vector sample exactly as unsteered");

    let steered = policy.generate_toward(&prompts, &seeds, &[vec![(joy, 0.0), (joy, 8.0), (joy, 8.0)]]);
    // An unsteered batch shares its prompts' prefill, a steered one pads them: the same
    // numbers up to float rounding.
    let (alone, unsteered) = (&steered[0][0], &plain[0][0]);
    assert_eq!(alone.tokens, unsteered.tokens, "rows are steered one by one: alpha = 0 samples as unsteered");
    assert!(alone.logprobs.iter().zip(&unsteered.logprobs).all(|(a, b)| (a - b).abs() < 1e-4));
    assert!(steered[0][1..].iter().zip(&plain[0][1..]).any(|(a, b)| a.tokens != b.tokens), "alpha = 8 toward joy changes the samples");
    assert_eq!((alone.behaviour_logprobs.as_ref(), unsteered.behaviour_logprobs.as_ref()), (None, None), "π_old drew them");
    for c in &steered[0][1..] {
        let lp = unpadded_logprobs(&m.model, &c.prompt, &c.tokens);
        assert_eq!(lp.len(), c.logprobs.len());
        assert!(lp.iter().zip(&c.logprobs).all(|(a, b)| (a - b).abs() < 1e-4), "recorded π_old is the unsteered policy's: {lp:?} vs {:?}", c.logprobs);
        let behaviour = c.behaviour_logprobs.as_ref().expect("a steered sample keeps the log-probs it was drawn with");
        assert_eq!(behaviour.len(), c.tokens.len());
        let (steered_sum, old_sum) = (behaviour.iter().sum::<f64>(), c.logprobs.iter().sum::<f64>());
        assert!(steered_sum > old_sum, "the steered policy found its own sample likelier than π_old does: {steered_sum} vs {old_sum}");
    }
}

/// log π(token | prefix) of each completion token, from the full logits of one unpadded row.
fn unpadded_logprobs(model: &CausalLm, prompt: &[u32], completion: &[u32]) -> Vec<f64> {
    let ids: Vec<i64> = prompt.iter().chain(completion).map(|t| *t as i64).collect();
    let n = ids.len();
    let logits = model.forward_logits(Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), &burn::tensor::Device::flex()));
    let v = logits.dims()[2];
    let lp: Vec<f32> = activation::log_softmax(logits.reshape([n, v]), 1).into_data().try_to_vec().unwrap();
    completion.iter().enumerate().map(|(j, t)| f64::from(lp[(prompt.len() + j - 1) * v + *t as usize])).collect()
}
