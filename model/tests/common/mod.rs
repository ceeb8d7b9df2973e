//! Helpers shared by the model tests.
#![allow(dead_code)]

use burn::tensor::Device;
use std::path::PathBuf;

/// The device the model tests run on: `$SELFEMO_TEST_DEVICE` (`cuda:0`, `wgpu`, in a build with
/// that feature: scripts/gpu-check), else the CPU.
pub fn test_device() -> Device {
    let name = std::env::var("SELFEMO_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    selfemo_model::parse_device(&name).unwrap_or_else(|e| panic!("SELFEMO_TEST_DEVICE: {e}"))
}

/// The default model's GGUF (see [`selfemo_model::fetch::default_model_for_tests`]).
pub fn default_model() -> Option<PathBuf> {
    selfemo_model::fetch::default_model_for_tests()
}

/// A file under tests/golden.
pub fn golden(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(rel)
}

/// Reads a golden JSON file.
pub fn golden_json(rel: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(golden(rel)).unwrap()).unwrap()
}

/// Values of a JSON array of numbers.
pub fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

/// Values of a JSON array of ids.
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// Largest absolute difference.
pub fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}
