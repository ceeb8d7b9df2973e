//! Emotion vectors on the real default model (2 layers): extraction is deterministic, vectors
//! round-trip through their file, α = 0 is bit-identical to no steering, α ≠ 0 steers.

mod common;

use burn::tensor::Device;
use selfemo_model::steering::QUERIES;
use selfemo_model::{EmotionVectors, LoadOptions, LoadedModel, ModelSource, SamplingConfig, generate};

fn small_model() -> Option<LoadedModel> {
    let gguf = common::default_model()?;
    Some(LoadedModel::load(&ModelSource::Gguf(gguf), LoadOptions { max_layers: Some(2), ..Default::default() }, &Device::flex()).unwrap())
}

#[test]
fn vectors_are_deterministic_round_trip_and_alpha_zero_changes_nothing() {
    let Some(m) = small_model() else { return };
    let emotions = ["joy", "anger"];
    let a = EmotionVectors::extract(&m.model, &m.tokenizer, "smollm2-2-layers", &emotions, &QUERIES[..4]);
    let b = EmotionVectors::extract(&m.model, &m.tokenizer, "smollm2-2-layers", &emotions, &QUERIES[..4]);
    assert_eq!(a, b, "extraction is deterministic");
    assert_eq!((a.emotions.len(), a.num_layers(), a.vectors[0][0].len()), (2, 2, 576));
    assert!(a.vectors[0][1].iter().any(|x| *x != 0.0), "conditioning moves the activations");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ev.safetensors");
    a.save(&path).unwrap();
    assert_eq!(EmotionVectors::load(&path).unwrap(), a, "round trip through the file");

    let device = Device::flex();
    let prompt = vec![m.tokenizer.encode(&m.tokenizer.chat_prompt(&[selfemo_model::Message::new("user", "How was your day?")]))];
    let run =
        |steer: Option<&[burn::tensor::Tensor<2>]>| generate(&m.model, &prompt, &SamplingConfig::greedy(6), &[0], &[], m.tokenizer.pad_id, steer).remove(0);
    let plain = run(None);
    let zero = a.mix(&[("joy".into(), 0.0), ("anger".into(), 0.0)], &device).unwrap();
    let zeroed = run(Some(&zero));
    assert_eq!(zeroed.tokens, plain.tokens);
    assert_eq!(
        zeroed.logprobs.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        plain.logprobs.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        "alpha = 0 is bit-identical"
    );
    let steered = run(Some(&a.mix(&[("joy".into(), 8.0)], &device).unwrap()));
    assert_ne!(steered.logprobs, plain.logprobs, "alpha != 0 steers");

    let err = a.mix(&[("pride".into(), 1.0)], &device).unwrap_err();
    assert!(err.contains("pride") && err.contains("joy, anger"), "{err}");
}

#[test]
fn a_model_file_is_not_a_vector_file() {
    let err = EmotionVectors::load(&common::golden("qwen3-tiny/model.safetensors")).unwrap_err().to_string();
    assert!(err.contains("model.safetensors") && err.contains("not an emotion-vector file"), "{err}");
}
