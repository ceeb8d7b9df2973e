//! `selfemo eval`: greedy, strict recognition scores of a model on dataset splits.

use anyhow::{Context, Result};
use clap::Args;
use selfemo_datasets::{Dataset, Split};
use selfemo_model::{LoadOptions, LoadedModel, ModelSource, parse_device};
use selfemo_selfplay::RecogniserPrompt;
use selfemo_trainer::recognition::{evaluate, prompts};
use std::path::PathBuf;

/// Options of `selfemo eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// `default`, a .gguf file, or an HF folder (a run's `final/`).
    #[arg(long, default_value = "default")]
    pub model: String,
    /// Comma-separated datasets.
    #[arg(long, value_delimiter = ',', value_parser = crate::cli_data::parse_dataset, default_value = "meld")]
    pub dataset: Vec<Dataset>,
    /// IEMOCAP folder, when iemocap is listed.
    #[arg(long)]
    pub iemocap: Option<PathBuf>,
    /// train, dev or test.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// First n targets only (0 = all).
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
    /// Past turns shown with the target (InstructERC: 20).
    #[arg(long, default_value_t = 20)]
    pub context_window: usize,
    /// Prompt token budget.
    #[arg(long, default_value_t = 512)]
    pub max_prompt_tokens: usize,
    /// Greedy tokens per answer.
    #[arg(long, default_value_t = 48)]
    pub max_new_tokens: usize,
    /// A run config whose [prompt] templates to use (else the defaults).
    #[arg(long)]
    pub prompt_from: Option<PathBuf>,
    /// cpu, cuda[:i] or wgpu.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// JSON report.
    #[arg(long, default_value = "eval.json")]
    pub out: PathBuf,
}

/// Evaluates and prints a table per dataset and the mean.
pub fn run(args: EvalArgs) -> Result<()> {
    let split = Split::from_name(&args.split).with_context(|| format!("unknown split {:?}", args.split))?;
    let device = parse_device(&args.device).map_err(anyhow::Error::msg)?;
    let template = match &args.prompt_from {
        Some(p) => selfemo_trainer::config::RunConfig::load(p).map_err(anyhow::Error::msg)?.prompt,
        None => RecogniserPrompt::default(),
    };
    let m = LoadedModel::load(&ModelSource::parse(&args.model), LoadOptions::default(), &device).context("loading the model")?;
    let mut reports = serde_json::Map::new();
    let (mut acc, mut wf1) = (Vec::new(), Vec::new());
    println!("{:<10} {:>8} {:>10} {:>10} {:>9} {:>8}", "dataset", "targets", "accuracy", "W-F1", "macro-F1", "invalid");
    for d in &args.dataset {
        let path = if *d == Dataset::Iemocap { args.iemocap.as_deref() } else { None };
        let corpus = selfemo_datasets::load(*d, path)?;
        let mut targets = corpus.targets(split);
        if args.limit > 0 {
            targets.truncate(args.limit);
        }
        let ps = prompts(&corpus, &targets, &template, args.context_window, args.max_prompt_tokens, &m.tokenizer);
        let (r, _) = evaluate(&m.model, &m.tokenizer, &ps, &corpus, args.max_new_tokens, 8);
        println!("{:<10} {:>8} {:>10.4} {:>10.4} {:>9.4} {:>8.3}", d.name(), ps.len(), r.accuracy, r.weighted_f1, r.macro_f1, r.invalid_rate);
        acc.push(r.accuracy);
        wf1.push(r.weighted_f1);
        reports.insert(d.name().to_string(), serde_json::to_value(&r)?);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    if args.dataset.len() > 1 {
        println!("{:<10} {:>8} {:>10.4} {:>10.4}", "mean", "", mean(&acc), mean(&wf1));
    }
    reports.insert("mean".into(), serde_json::json!({ "accuracy": mean(&acc), "weighted_f1": mean(&wf1) }));
    std::fs::write(&args.out, serde_json::to_vec_pretty(&reports)?).with_context(|| format!("writing {}", args.out.display()))?;
    println!("wrote {}", args.out.display());
    Ok(())
}
