//! The default model against reference values from HF transformers (tests/golden/smollm2.json)
//! and research/models.md: tokenizer ids, logits, teacher-forced log-probs, greedy text.

mod common;

use burn::tensor::{Int, Tensor, TensorData};
use common::*;
use selfemo_model::{LoadOptions, LoadedModel, Message, ModelSource, SamplingConfig, completion_logprobs, generate};

fn logits_at(m: &LoadedModel, ids: &[u32]) -> Vec<Vec<f64>> {
    let t = Tensor::<2, Int>::from_data(TensorData::new(ids.iter().map(|x| *x as i64).collect(), [1, ids.len()]), &test_device());
    let logits = m.model.forward_logits(t);
    let v = logits.dims()[2];
    let flat: Vec<f32> = logits.into_data().try_to_vec().unwrap();
    flat.chunks(v).map(|r| r.iter().map(|x| *x as f64).collect()).collect()
}

#[test]
fn default_model_matches_the_reference() {
    let Some(path) = default_model() else { return };
    let m = LoadedModel::load(&ModelSource::Gguf(path), LoadOptions::default(), &test_device()).unwrap();
    assert_eq!(m.config.num_hidden_layers, 30);
    assert_eq!((m.config.num_attention_heads, m.config.num_key_value_heads, m.config.head_dim), (9, 3, 64));
    assert!(m.config.tie_word_embeddings);

    // Tokenizer (research/models.md 1).
    assert_eq!(m.tokenizer.encode("Hello world! 12345 emotions: joy, anger."), [19556, 905, 17, 216, 33, 34, 35, 36, 37, 4801, 42, 7697, 28, 9846, 30]);
    let france = m.tokenizer.encode(&m.tokenizer.chat_prompt(&[Message::new("user", "What is the capital of France?")]));
    assert_eq!(france.len(), 37);

    let golden = golden_json("smollm2.json");
    for case in golden["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let ids = common::ids(&case["ids"]);
        assert_eq!(m.tokenizer.encode(text), ids, "tokenizer ids of {text:?}");

        // Logits at the reference positions: the top-10 ids' logits within 2e-2.
        let logits = logits_at(&m, &ids);
        for (pos, top) in case["top10_at"].as_object().unwrap() {
            let row = &logits[pos.parse::<usize>().unwrap()];
            let want_ids = common::ids(&top["ids"]);
            let want = floats(&top["logits"]);
            let got: Vec<f64> = want_ids.iter().map(|i| row[*i as usize]).collect();
            assert!(max_diff(&got, &want) < 2e-2, "{text:?} @ {pos}: {got:?} vs {want:?}");
            let best = row.iter().cloned().fold(f64::MIN, f64::max);
            assert!((best - want[0]).abs() < 2e-2, "top logit at {pos}");
        }

        // Teacher-forced log-probs within 2e-3 (what the trainer scores).
        let lp: Vec<f64> = completion_logprobs(&m.model, &[ids[..1].to_vec()], &[ids[1..].to_vec()], m.tokenizer.pad_id, 1.0)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect();
        let want = floats(&case["teacher_forced_logprobs"]);
        assert!(max_diff(&lp, &want) < 2e-3, "{text:?}: teacher-forced log-probs differ by {}", max_diff(&lp, &want));

        // Greedy continuation of 20 tokens.
        let want = common::ids(&case["greedy_20"]);
        let g = generate(&m.model, std::slice::from_ref(&ids), &SamplingConfig::greedy(20), &[0], &m.tokenizer.eos_ids, m.tokenizer.pad_id, None);
        assert_eq!(g[0].tokens, want, "{text:?}: greedy continuation");
    }

    // research/models.md 1: position-0 logits and the France top-5.
    let logits = logits_at(&m, &france);
    assert!(max_diff(&logits[0][..4], &[13.4255, 3.4145, 6.3223, 2.1176]) < 2e-2);
    let last = &logits[36];
    let mut order: Vec<usize> = (0..last.len()).collect();
    order.sort_by(|a, b| last[*b].total_cmp(&last[*a]));
    let top5: Vec<usize> = order[..5].to_vec();
    assert_eq!(top5, [504, 60, 15319, 2219, 7026]);
    let got: Vec<f64> = top5.iter().map(|i| last[*i]).collect();
    assert!(max_diff(&got, &[25.325, 25.243, 24.942, 24.402, 24.315]) < 2e-2);
    let (text, g) = m.chat(&[vec![Message::new("user", "What is the capital of France?")]], &SamplingConfig::greedy(20), 0, None).remove(0);
    assert_eq!(text, "The capital of France is Paris.");
    assert!(g.finished);
}
