//! `selfemo fetch-model` and `selfemo generate`.

use anyhow::{Context, Result};
use clap::Args;
use selfemo_model::{LoadOptions, LoadedModel, Message, ModelSource, SamplingConfig, fetch, parse_device};

/// Options of `selfemo generate`.
#[derive(Args)]
pub struct GenerateArgs {
    /// The user message.
    #[arg(long)]
    pub prompt: String,
    /// `default`, a .gguf file, or an HF folder (a checkpoint's `final/` works).
    #[arg(long, default_value = "default")]
    pub model: String,
    /// Optional system message (SmolLM2 otherwise gets its default one).
    #[arg(long)]
    pub system: Option<String>,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Nucleus mass.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Top-k (0 = off).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Most new tokens.
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// Number of samples.
    #[arg(long, default_value_t = 1)]
    pub samples: usize,
    /// RNG seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// cpu, cuda[:i] or wgpu.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// Fetches (or verifies) the default model and prints its path.
pub fn fetch_model() -> Result<()> {
    let path = fetch::ensure_default_model()?;
    println!("{}", path.display());
    Ok(())
}

/// Chats once with a model.
pub fn generate(args: GenerateArgs) -> Result<()> {
    generate_steered(args, None)
}

/// Chats once with a model, steered by a mixture `(emotion, α)` of the vectors in a file.
pub fn generate_steered(args: GenerateArgs, steering: Option<(&std::path::Path, Vec<(String, f64)>)>) -> Result<()> {
    let device = parse_device(&args.device).map_err(anyhow::Error::msg)?;
    let sampling = SamplingConfig { temperature: args.temperature, top_p: args.top_p, top_k: args.top_k, max_new_tokens: args.max_new_tokens };
    sampling.validate().map_err(anyhow::Error::msg)?;
    let loaded =
        LoadedModel::load(&ModelSource::parse(&args.model), LoadOptions::default(), &device).with_context(|| format!("loading model {}", args.model))?;
    let steer = match steering {
        Some((path, mixture)) => {
            let vectors = selfemo_model::EmotionVectors::load(path)?;
            anyhow::ensure!(
                vectors.num_layers() == loaded.model.num_layers(),
                "{}: vectors for {} layers ({}), the model has {}",
                path.display(),
                vectors.num_layers(),
                vectors.model,
                loaded.model.num_layers()
            );
            Some(vectors.mix(&mixture, &device).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?)
        }
        None => None,
    };
    let mut chat = Vec::new();
    if let Some(s) = args.system {
        chat.push(Message::new("system", s));
    }
    chat.push(Message::new("user", args.prompt));
    let prompts = vec![chat; args.samples.max(1)];
    for (i, (text, g)) in loaded.chat(&prompts, &sampling, args.seed, steer.as_deref()).into_iter().enumerate() {
        if args.samples > 1 {
            println!("--- sample {i} ({} tokens, mean log-prob {:.3})", g.tokens.len(), g.logprobs.iter().sum::<f64>() / g.logprobs.len().max(1) as f64);
        }
        println!("{text}");
    }
    Ok(())
}
