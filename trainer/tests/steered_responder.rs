//! Steered responder sampling on the real default model (2 layers): α = 0 and emotions without
//! a vector sample as unsteered; α ≠ 0 changes the samples; and the log-probs recorded
//! for steered samples are the unsteered policy's, so they train as its own.

use selfemo_datasets::Dataset;
use selfemo_model::steering::QUERIES;
use selfemo_model::{EmotionVectors, LoadOptions, LoadedModel, ModelSource, SamplingConfig, completion_logprobs};
use selfemo_selfplay::{FilledPrompt, Policy};
use selfemo_trainer::policy::ModelPolicy;

#[test]
fn steering_changes_samples_but_not_the_recorded_policy() {
    let Some(path) = selfemo_model::fetch::default_model_for_tests() else { return };
    let device = burn::tensor::Device::flex();
    let m = LoadedModel::load(&ModelSource::Gguf(path), LoadOptions { max_layers: Some(2), ..Default::default() }, &device).unwrap();
    let vectors = EmotionVectors::extract(&m.model, &m.tokenizer, "smollm2-2-layers", &["joy", "anger"], &QUERIES[..4]);
    let sampling = SamplingConfig { temperature: 1.0, top_p: 1.0, top_k: 0, max_new_tokens: 8 };
    let policy = ModelPolicy { model: &m.model, tok: &m.tokenizer, sampling, score_rows: 8, vectors: Some(&vectors) };
    let prompts = [FilledPrompt { system: "You continue conversations.".into(), user: "A: I got the job!\n\nWrite B's next line.".into(), reply_prefix: String::new() }];
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
    for c in &steered[0][1..] {
        let lp = completion_logprobs(&m.model, std::slice::from_ref(&c.prompt), std::slice::from_ref(&c.tokens), m.tokenizer.pad_id, 1.0);
        let lp: Vec<f32> = lp.into_data().try_to_vec().unwrap();
        assert_eq!(lp.len(), c.logprobs.len());
        assert!(lp.iter().zip(&c.logprobs).all(|(a, b)| (f64::from(*a) - b).abs() < 1e-4), "recorded log-probs are the unsteered policy's");
    }
}
