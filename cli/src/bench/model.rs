//! `selfemo bench model`: prefill, decode and training-step throughput of the policy, each also
//! as achieved GFLOP/s over the f32 matmul GFLOP/s measured in the same run (the machine's peak).

use anyhow::{Context, Result};
use burn::module::Module;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use clap::Args;
use selfemo_model::layers::project;
use selfemo_model::{LoadOptions, LoadedModel, ModelSource, SamplingConfig, completion_logprobs, generate, parse_device};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// Options of `selfemo bench model`.
#[derive(Args)]
pub struct BenchModelArgs {
    /// `default`, a .gguf file, or an HF folder.
    #[arg(long, default_value = "default")]
    pub model: String,
    /// Keep only the first n layers (0 = all).
    #[arg(long, default_value_t = 0)]
    pub layers: usize,
    /// Prompt tokens for the prefill measurement.
    #[arg(long, default_value_t = 128)]
    pub prompt_len: usize,
    /// New tokens per decode measurement.
    #[arg(long, default_value_t = 16)]
    pub decode_tokens: usize,
    /// Sequences in the training-step measurement.
    #[arg(long, default_value_t = 4)]
    pub train_batch: usize,
    /// Prompt tokens per training sequence.
    #[arg(long, default_value_t = 96)]
    pub train_prompt: usize,
    /// Completion tokens per training sequence (log-probs and gradients there).
    #[arg(long, default_value_t = 32)]
    pub train_completion: usize,
    /// Repeats per measurement (best is reported).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// cpu, cuda[:i] or wgpu.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// JSON report.
    #[arg(long, default_value = "bench-model.json")]
    pub out: PathBuf,
}

/// One measured row.
#[derive(Serialize)]
struct Row {
    what: String,
    tokens_per_s: f64,
    gflops: f64,
    fraction_of_peak: f64,
    /// Decoding: the model's weights read per second (each step reads all of them once).
    #[serde(skip_serializing_if = "Option::is_none")]
    weights_gb_per_s: Option<f64>,
}

/// Best wall time of `repeats` runs of `f`, in seconds.
fn best_of(repeats: usize, device: &Device, mut f: impl FnMut()) -> f64 {
    (0..repeats.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            let _ = device.sync();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// f32 matmul GFLOP/s of an [m, k] × [k, n] product on `device`, best of `repeats`.
pub fn matmul_gflops([m, k, n]: [usize; 3], repeats: usize, device: &Device) -> f64 {
    let a = Tensor::<2>::random([m, k], Distribution::Default, device);
    let b = Tensor::<2>::random([k, n], Distribution::Default, device);
    let _ = a.clone().matmul(b.clone()).into_data(); // warm-up
    let s = best_of(repeats, device, || {
        let _ = a.clone().matmul(b.clone()).into_data();
    });
    2.0 * (m * k * n) as f64 / s / 1e9
}

/// The machine's f32 matmul peak: the best of square products and the model's own MLP shape.
pub fn matmul_peak(d: usize, ffn: usize, repeats: usize, device: &Device) -> (f64, [usize; 3]) {
    [[1024, 1024, 1024], [2048, 2048, 2048], [512, d, ffn], [512, ffn, d]]
        .into_iter()
        .map(|shape| (matmul_gflops(shape, repeats, device), shape))
        .fold((0.0, [0; 3]), |best, x| if x.0 > best.0 { x } else { best })
}

/// Runs the benchmark and prints a table.
pub fn bench_model(args: BenchModelArgs) -> Result<()> {
    let device = parse_device(&args.device).map_err(anyhow::Error::msg)?;
    let options = LoadOptions { max_layers: (args.layers > 0).then_some(args.layers), ..Default::default() };
    let loaded = LoadedModel::load(&ModelSource::parse(&args.model), options, &device).context("loading the model")?;
    let c = &loaded.config;
    let (peak, shape) = matmul_peak(c.hidden_size, c.intermediate_size, args.repeats + 2, &device);
    println!("model: {} layers, d {}, vocab {}; threads {}", c.num_hidden_layers, c.hidden_size, c.vocab_size, threads());
    println!("f32 matmul peak (best of square and MLP shapes, same run): {peak:.1} GFLOP/s at {shape:?}");
    let mut rows = Vec::new();
    let mut push = |what: String, tokens: f64, flops: f64, secs: f64, weights_gb_per_s: Option<f64>| {
        let gflops = flops / secs / 1e9;
        rows.push(Row { what, tokens_per_s: tokens / secs, gflops, fraction_of_peak: gflops / peak, weights_gb_per_s });
    };
    let ids: Vec<u32> = (0..args.prompt_len).map(|i| 300 + (i as u32 * 37) % 20_000).collect();
    let t = args.prompt_len;

    // Prefill: the whole prompt, logits at the last position only (as generation does).
    let prefill_flops = (0..t).map(|p| c.trunk_flops_per_token(p + 1)).sum::<f64>() + c.head_flops();
    let m = &loaded.model;
    let weight_bytes = (m.num_params() * 4) as f64;
    let s = best_of(args.repeats, &device, || {
        let x = Tensor::<2, Int>::from_data(TensorData::new(ids.iter().map(|v| *v as i64).collect(), [1, t]), &device);
        let h = m.hidden(x, &[vec![true; t]], None, None);
        let last = h.slice([0..1, t - 1..t, 0..c.hidden_size]).reshape([1, c.hidden_size]);
        let _ = m.logits(last).into_data();
    });
    push(format!("prefill b1 x {t}"), t as f64, prefill_flops, s, None);

    // Decode: batch 1 and 8 after a 32-token prompt, forced to run every step (no stop token).
    for b in [1usize, 8] {
        let prompts = vec![ids[..32].to_vec(); b];
        let cfg = SamplingConfig { temperature: 1.0, max_new_tokens: args.decode_tokens + 1, ..Default::default() };
        let seeds: Vec<u64> = (0..b as u64).collect();
        let prompt_s = best_of(args.repeats, &device, || {
            generate(m, &prompts, &SamplingConfig { max_new_tokens: 1, ..cfg.clone() }, &seeds, &[], 0, None);
        });
        let total_s = best_of(args.repeats, &device, || {
            generate(m, &prompts, &cfg, &seeds, &[], 0, None);
        });
        let steps = args.decode_tokens as f64;
        let flops = b as f64 * (0..args.decode_tokens).map(|i| c.trunk_flops_per_token(33 + i) + c.head_flops()).sum::<f64>();
        let secs = (total_s - prompt_s).max(1e-9);
        push(format!("decode b{b}"), b as f64 * steps, flops, secs, Some(steps / secs * weight_bytes / 1e9));
    }

    // The vocabulary projection of 8 decoded rows, by `project` as decoding runs it (on flex the
    // few-rows kernel, elsewhere x · Wᵀ) and by the general gemm: W (the head, larger than the
    // caches) streams from memory.
    let head = m.lm_head.as_ref().map_or_else(|| m.model.embed_tokens.weight.val(), |h| h.weight.val());
    let decoded = Tensor::<2>::random([8, c.hidden_size], Distribution::Default, &device);
    let project_row = if device == Device::flex() { "head b8, few-rows kernel" } else { "head b8, x · Wᵀ" };
    for (what, by_project) in [(project_row, true), ("head b8, gemm", false)] {
        let s = best_of(args.repeats, &device, || {
            let out = if by_project { project(decoded.clone(), head.clone()) } else { head.clone().matmul(decoded.clone().transpose()) };
            let _ = out.into_data();
        });
        push(what.to_string(), 8.0, c.head_flops() * 8.0, s, None);
    }

    // Forward + backward of completion log-probs (the training step's core).
    let ad = device.clone().autodiff();
    let trainable = LoadedModel::load(&ModelSource::parse(&args.model), options, &ad).context("loading the model for autodiff")?;
    let (bp, bc) = (args.train_prompt, args.train_completion);
    let prompts = vec![ids[..bp.min(ids.len())].to_vec(); args.train_batch];
    let completions = vec![ids[..bc.min(ids.len())].to_vec(); args.train_batch];
    let s = best_of(args.repeats, &ad, || {
        let lp = completion_logprobs(&trainable.model, &prompts, &completions, 0, 1.0);
        let grads = lp.sum().backward();
        drop(grads);
    });
    let seq = bp + bc;
    let fwd = args.train_batch as f64 * ((0..seq).map(|p| c.trunk_flops_per_token(p + 1)).sum::<f64>() + bc as f64 * c.head_flops());
    push(format!("fwd+bwd b{} x {seq} ({bc} scored)", args.train_batch), (args.train_batch * seq) as f64, 3.0 * fwd, s, None);

    println!("{:<34} {:>12} {:>10} {:>10}", "measurement", "tokens/s", "GFLOP/s", "of peak");
    for r in &rows {
        println!("{:<34} {:>12.1} {:>10.1} {:>9.1}%", r.what, r.tokens_per_s, r.gflops, 100.0 * r.fraction_of_peak);
    }
    let bandwidth = (args.device == "cpu").then(|| memory_read_gbps(args.repeats + 2));
    for (what, gbps) in rows.iter().filter_map(|r| Some((&r.what, r.weights_gb_per_s?))) {
        let share = bandwidth.map_or(String::new(), |bw| format!(", {:.0}% of the memory read bandwidth", 100.0 * gbps / bw));
        println!("{what} reads the {:.0} MB of weights at {gbps:.1} GB/s{share}", weight_bytes / 1e6);
    }
    if let Some(bw) = bandwidth {
        println!("memory read bandwidth (same run): {bw:.1} GB/s");
    }
    let report = serde_json::json!({
        "matmul_peak_gflops": peak, "peak_shape": shape, "memory_read_gb_per_s": bandwidth,
        "weight_bytes": weight_bytes, "layers": c.num_hidden_layers, "rows": rows,
    });
    crate::report::write_json(&args.out, &report)?;
    println!("wrote {}", args.out.display());
    Ok(())
}

/// Read bandwidth of main memory in GB/s: every thread sums its share of a 256 MiB buffer
/// (larger than any cache), best of `repeats`. Decoding a few rows is bound by this.
fn memory_read_gbps(repeats: usize) -> f64 {
    use rayon::prelude::*;
    let buffer = vec![1.0f32; 64 << 20];
    let sum = |chunk: &[f32]| {
        let mut acc = [0.0f32; 16];
        chunk.chunks_exact(16).for_each(|c| acc.iter_mut().zip(c).for_each(|(a, x)| *a += x));
        acc.iter().sum::<f32>()
    };
    let secs = (0..repeats.max(1))
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(buffer.par_chunks(1 << 20).map(sum).sum::<f32>());
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    (buffer.len() * 4) as f64 / secs / 1e9
}

/// Hardware threads available to the CPU backend.
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
