//! Tiny random Qwen3 (q/k-norm, untied head, head_dim 24 ≠ d/H) and Llama (tied head) HF
//! folders against full logits from HF transformers, and the export round trip.

mod common;

use burn::tensor::{DType, Int, Tensor, TensorData};
use common::*;
use selfemo_model::export::hf::{HfOptions, write_model};
use selfemo_model::weights::load_hf;
use selfemo_model::{CausalLm, SamplingConfig, generate};

fn logits(model: &CausalLm, rows: &[Vec<u32>]) -> Vec<f64> {
    let (b, t) = (rows.len(), rows[0].len());
    let ids: Vec<i64> = rows.iter().flatten().map(|x| *x as i64).collect();
    let x = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, t]), &test_device());
    model.forward_logits(x).into_data().try_to_vec::<f32>().unwrap().into_iter().map(f64::from).collect()
}

fn check(name: &str) {
    let dir = golden(name);
    let (model, config) = load_hf(&dir, DType::F32, None, &test_device()).unwrap();
    let expected = golden_json(&format!("{name}/expected.json"));
    let rows: Vec<Vec<u32>> = expected["input_ids"].as_array().unwrap().iter().map(ids).collect();
    let want: Vec<f64> = expected["logits"].as_array().unwrap().iter().flat_map(|r| r.as_array().unwrap().iter().flat_map(floats)).collect();
    let got = logits(&model, &rows);
    assert!(max_diff(&got, &want) < 1e-4, "{name}: logits differ by {}", max_diff(&got, &want));

    let greedy = generate(&model, &rows[..1], &SamplingConfig::greedy(8), &[0], &[], 0, None);
    assert_eq!(greedy[0].tokens, ids(&expected["greedy_8_from_first"]), "{name}: greedy");

    let out = tempfile::tempdir().unwrap();
    write_model(&model, &config, out.path(), HfOptions::default()).unwrap();
    let (back, back_config) = load_hf(out.path(), DType::F32, None, &test_device()).unwrap();
    assert_eq!(back_config, config);
    assert_eq!(logits(&back, &rows), got, "{name}: export round trip");
}

#[test]
fn qwen3_tiny_matches_transformers() {
    check("qwen3-tiny");
}

#[test]
fn llama_tiny_matches_transformers() {
    check("llama-tiny");
}

#[test]
fn bf16_loading_keeps_bf16_parameters() {
    let (model, _) = load_hf(&golden("qwen3-tiny"), DType::BF16, Some(1), &test_device()).unwrap();
    assert_eq!(model.model.layers[0].mlp.up_proj.weight.val().dtype(), DType::BF16);
    assert_eq!(model.num_layers(), 1);
}
