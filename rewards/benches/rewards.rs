//! Throughput of parsing plus the full recognition reward on realistic completions.
#![allow(missing_docs)] // criterion_group! writes undocumented functions

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use selfemo_datasets::Dataset;
use selfemo_rewards::{RewardConfig, score_recognition_group};
use std::hint::black_box;

fn completions() -> Vec<String> {
    let answers = ["joy", "anger, disgust", "neutral", "Sadness", "surprise, joy", "fear", "boredom", "joy, joy"];
    (0..256)
        .map(|i| {
            let a = answers[i % answers.len()];
            match i % 16 {
                0 => format!("I think the answer is {a}"), // malformed
                _ => format!(
                    "<think>Speaker {i} repeats the question and raises their voice. Earlier they said they were fine, \
                     but the short reply suggests the opposite. The emotion is most likely {a}.</think>\n<answer>{a}</answer>"
                ),
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let all = completions();
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let labels = Dataset::Meld.labels();
    let gold = [labels.parse("joy").unwrap()];
    let config = RewardConfig::default();
    let mut g = c.benchmark_group("rewards");
    g.throughput(Throughput::Elements(refs.len() as u64));
    g.bench_function("parse+recognition reward, groups of 4", |b| {
        b.iter(|| {
            for group in refs.chunks(4) {
                black_box(score_recognition_group(black_box(group), &gold, labels, &config, None));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
