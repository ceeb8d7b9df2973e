//! `selfemo bench train`: the training loop's own self-play SELF-GRPO [`Step`] (recogniser
//! rollout, responder rollout with re-recognition, flywheel, update) timed by phase, and
//! the update's achieved GFLOP/s over the f32 matmul peak measured in the same run. The shape
//! is set by flags so the same work can be run on other trainers.

use crate::bench::model::matmul_peak;
use anyhow::{Context, Result};
use burn::module::Module;
use clap::Args;
use selfemo_datasets::{Dataset, Split};
use selfemo_model::{LoadOptions, LoadedModel, ModelSource, parse_device};
use selfemo_selfplay::{EmotionDraw, Flywheel, RecognitionItem, Roles};
use selfemo_trainer::config::RunConfig;
use selfemo_trainer::optim::LrSchedule;
use selfemo_trainer::self_play::{step_items, to_groups};
use selfemo_trainer::step::Step;
use std::path::PathBuf;

/// Options of `selfemo bench train`.
#[derive(Args)]
pub struct BenchTrainArgs {
    /// `default`, a .gguf file, or an HF folder.
    #[arg(long, default_value = "default")]
    pub model: String,
    /// Keep only the first n layers (0 = all).
    #[arg(long, default_value_t = 0)]
    pub layers: usize,
    /// Dataset whose first train targets are the prompts.
    #[arg(long, value_parser = crate::data::parse_dataset, default_value = "meld")]
    pub dataset: Dataset,
    /// Recognition prompts per step.
    #[arg(long, default_value_t = 4)]
    pub prompts: usize,
    /// Responder prompts per step (each adds G responses and their re-recognition).
    #[arg(long, default_value_t = 2)]
    pub responder_prompts: usize,
    /// G, completions per prompt.
    #[arg(long, default_value_t = 4)]
    pub num_generations: usize,
    /// Most tokens per completion.
    #[arg(long, default_value_t = 32)]
    pub max_completion_length: usize,
    /// KL weight (> 0 adds the reference forward to the update).
    #[arg(long, default_value_t = 0.04)]
    pub beta: f64,
    /// The update's layout: `on` runs each group's prompt once (a prefix tree), `off` once per
    /// completion (padded rows).
    #[arg(long, value_parser = ["on", "off"], default_value = "on")]
    pub prefix_sharing: String,
    /// Steps measured (after one warm-up step); the mean is reported.
    #[arg(long, default_value_t = 2)]
    pub steps: usize,
    /// cpu, cuda[:i] or wgpu.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// JSON report.
    #[arg(long, default_value = "bench-train.json")]
    pub out: PathBuf,
}

/// Runs the benchmark and prints the phases.
pub fn bench_train(args: BenchTrainArgs) -> Result<()> {
    let device = parse_device(&args.device).map_err(anyhow::Error::msg)?.autodiff();
    let options = LoadOptions { max_layers: (args.layers > 0).then_some(args.layers), ..Default::default() };
    let loaded = LoadedModel::load(&ModelSource::parse(&args.model), options, &device).context("loading the model")?;
    let LoadedModel { mut model, config: c, tokenizer } = loaded;
    let mut run: RunConfig = toml::from_str("name = \"bench\"").expect("a name is the only required field");
    run.data.dataset = args.dataset;
    (run.grpo.num_generations, run.grpo.max_completion_length, run.grpo.beta) = (args.num_generations, args.max_completion_length, args.beta);
    (run.grpo.prompts_per_step, run.selfplay.responder_prompts_per_step, run.grpo.learning_rate) = (args.prompts, args.responder_prompts, 1e-6);
    run.grpo.prefix_sharing = args.prefix_sharing == "on";
    let (g, sp) = (&run.grpo, &run.selfplay);
    let corpus = selfemo_datasets::load(args.dataset, None)?;
    let w = run.data.context_window;
    // The same prompts every step: the first train targets.
    let real: Vec<_> = corpus
        .targets(Split::Train)
        .into_iter()
        .take(args.prompts)
        .enumerate()
        .filter_map(|(k, t)| RecognitionItem::from_target(&corpus, t, w, k as u64).map(|i| (t, i)))
        .collect();
    let roles = Roles {
        recogniser: &run.prompt,
        responder: &sp.responder,
        rerecognition_prefix: &sp.rerecognition_prefix,
        judge: &sp.judge,
        labels: corpus.dataset.labels(),
        rewards: &run.rewards,
        max_prompt_tokens: run.data.max_prompt_tokens,
    };
    let frozen = (g.beta > 0.0).then(|| model.valid());
    let step = Step {
        config: &run,
        tok: &tokenizer,
        roles,
        reserve: &[],
        vectors: None,
        frozen: frozen.as_ref(),
        settings: run.update_settings(tokenizer.pad_id),
        schedule: LrSchedule::constant(1e-6),
        collective: &selfemo_trainer::collective::Local,
    };
    let draw = EmotionDraw::new(sp.target_emotion, &corpus);
    let mut optim = g.adamw.build();
    let (peak, shape) = matmul_peak(c.hidden_size, c.intermediate_size, 4, &device.inner());

    let (mut phases, mut tokens, mut update_flops) = ([0.0f64; 3], 0.0, 0.0);
    for t in 0..=args.steps {
        let items = step_items(0, 0, args.prompts, &real, &[], sp, &corpus, w, run.seed, &draw);
        let (m, out) = step.run(model, &mut optim, &mut Flywheel::default(), &items, 1, t as u64);
        model = m;
        let out = out.map_err(anyhow::Error::new)?;
        if t == 0 {
            continue; // warm-up
        }
        let v = &out.row.values;
        let timing = |k: &str| v.get(k).copied().unwrap_or(0.0);
        for (p, keys) in phases.iter_mut().zip([&["timing/generate"][..], &["timing/respond", "timing/score"], &["timing/update"]]) {
            *p += keys.iter().map(|k| timing(k)).sum::<f64>();
        }
        // Update work, counted from the tokens the layout runs: the policy's forward + backward
        // (3×) per μ step and the reference forward; with prefix sharing a group's prompt runs
        // once, its completions after it.
        let passes = 3.0 * g.num_iterations as f64 + if g.beta > 0.0 { 1.0 } else { 0.0 };
        let groups = to_groups(&out.recognition, &out.expression);
        let span = |from: usize, to: usize| (from..to).map(|p| c.trunk_flops_per_token(p + 1)).sum::<f64>();
        for group in &groups {
            let p = group.prompt.len();
            if g.prefix_sharing {
                update_flops += passes * span(0, p);
                tokens += p as f64;
            }
            for x in &group.samples {
                let start = if g.prefix_sharing { p } else { 0 };
                update_flops += passes * (span(start, p + x.completion.len()) + x.completion.len() as f64 * c.head_flops());
                tokens += (p + x.completion.len() - start) as f64;
            }
        }
    }
    let n = args.steps.max(1) as f64;
    let [generate_s, respond_s, update_s] = phases.map(|p| p / n);
    let total = generate_s + respond_s + update_s;
    let update_gflops = update_flops / n / update_s / 1e9;
    println!(
        "model: {} layers; {} recogniser + {} responder prompts x G {} (max {} tokens), beta {}, all parameters trainable, f32, prefix sharing {}",
        c.num_hidden_layers, args.prompts, args.responder_prompts, g.num_generations, g.max_completion_length, g.beta, args.prefix_sharing
    );
    println!("f32 matmul peak (same run): {peak:.1} GFLOP/s at {shape:?}");
    println!("{:<10} {:>9} {:>7}", "phase", "seconds", "share");
    for (name, s) in [("rollout", generate_s), ("respond", respond_s), ("update", update_s), ("step", total)] {
        println!("{name:<10} {s:>9.2} {:>6.1}%", 100.0 * s / total);
    }
    println!("update: {:.0} tokens run per step", tokens / n);
    println!("update: {update_gflops:.1} GFLOP/s = {:.1}% of peak", 100.0 * update_gflops / peak);
    let report = serde_json::json!({
        "matmul_peak_gflops": peak, "peak_shape": shape, "layers": c.num_hidden_layers,
        "prompts": args.prompts, "responder_prompts": args.responder_prompts, "num_generations": g.num_generations, "max_completion_length": g.max_completion_length, "beta": g.beta,
        "seconds": { "rollout": generate_s, "respond": respond_s, "update": update_s, "step": total },
        "prefix_sharing": g.prefix_sharing, "update_tokens": tokens / n, "update_gflops": update_gflops, "update_fraction_of_peak": update_gflops / peak,
    });
    crate::report::write_json(&args.out, &report)?;
    println!("wrote {}", args.out.display());
    Ok(())
}
