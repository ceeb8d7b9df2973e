//! Helpers shared by the model tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The default model's GGUF: fetched under CI (`CI=true`), else `None` (the test skips) when absent.
pub fn default_model() -> Option<PathBuf> {
    if let Some(p) = selfemo_model::fetch::default_model_if_present() {
        return Some(p);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        return Some(selfemo_model::fetch::ensure_default_model().expect("CI must be able to fetch the default model"));
    }
    eprintln!("skipping: the default model is not in the cache (run scripts/fetch-model)");
    None
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
