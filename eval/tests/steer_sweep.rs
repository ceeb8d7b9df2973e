//! The steering sweep on the real default model (2 layers, tiny grid): one row per (emotion, α),
//! consistency a share, perplexity finite, and α = 0 the same replies for every emotion.

use burn::tensor::Device;
use selfemo_eval::steer_sweep::{SWEEP_QUERIES, sweep};
use selfemo_model::{EmotionVectors, LoadOptions, LoadedModel, ModelSource};

#[test]
fn sweep_rows_cover_the_grid_and_alpha_zero_is_the_shared_control() {
    let Some(gguf) = selfemo_model::fetch::default_model_for_tests() else { return };
    let m = LoadedModel::load(&ModelSource::Gguf(gguf), LoadOptions { max_layers: Some(2), ..Default::default() }, &Device::flex()).unwrap();
    let vectors = EmotionVectors::extract(&m.model, &m.tokenizer, "2 layers", &["joy", "anger"], &selfemo_model::steering::QUERIES[..3]);
    let emotions = vec!["joy".to_string(), "anger".to_string()];
    let rows = sweep(&m.model, &m.tokenizer, &vectors, &emotions, &[0.0, 6.0], &SWEEP_QUERIES[..3], 4).unwrap();
    assert_eq!(rows.iter().map(|r| (r.emotion.as_str(), r.alpha)).collect::<Vec<_>>(), [("joy", 0.0), ("joy", 6.0), ("anger", 0.0), ("anger", 6.0)]);
    assert!(rows.iter().all(|r| (0.0..=1.0).contains(&r.consistency)
        && r.p_emotion > 0.0
        && r.p_emotion < 1.0
        && r.perplexity.is_finite()
        && r.perplexity >= 1.0));
    assert_eq!(rows[0].example, rows[2].example, "alpha 0 replies do not depend on the emotion");
    assert_eq!(rows[0].perplexity, rows[2].perplexity);
    assert!(
        sweep(&m.model, &m.tokenizer, &vectors, &["pride".to_string()], &[1.0], &SWEEP_QUERIES[..1], 2).unwrap_err().to_string().contains("not a MELD label")
    );
}
