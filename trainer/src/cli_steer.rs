//! `selfemo steer extract|generate`: emotion vectors of a model, and chat steered by them.

use crate::cli_model::{GenerateArgs, generate_steered};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use selfemo_model::steering::QUERIES;
use selfemo_model::{EmotionVectors, LoadOptions, LoadedModel, ModelSource, parse_device};
use std::path::PathBuf;

/// `selfemo steer …`.
#[derive(Subcommand)]
pub enum SteerCommand {
    /// Extract one vector per emotion and layer (mean attention-output difference between
    /// emotion-conditioned and neutral replies) into a safetensors file.
    Extract(ExtractArgs),
    /// Chat with the model steered by Σ α_e EV_e (pairs of --emotion and --alpha).
    Generate(SteerGenerateArgs),
}

/// Options of `selfemo steer extract`.
#[derive(Args)]
pub struct ExtractArgs {
    /// `default`, a .gguf file, or an HF folder.
    #[arg(long, default_value = "default")]
    pub model: String,
    /// Emotions to extract.
    #[arg(long, value_delimiter = ',', default_value = "joy,sadness,anger,fear,surprise,disgust")]
    pub emotions: Vec<String>,
    /// cpu, cuda[:i] or wgpu.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Output file.
    #[arg(long, default_value = "emotion-vectors.safetensors")]
    pub out: PathBuf,
}

/// Options of `selfemo steer generate`.
#[derive(Args)]
pub struct SteerGenerateArgs {
    /// The vectors file from `selfemo steer extract`.
    #[arg(long, default_value = "emotion-vectors.safetensors")]
    pub vectors: PathBuf,
    /// An emotion of the mixture (repeat for several, each with its --alpha).
    #[arg(long, required = true)]
    pub emotion: Vec<String>,
    /// α of the matching --emotion.
    #[arg(long, required = true, allow_hyphen_values = true)]
    pub alpha: Vec<f64>,
    /// Chat options.
    #[command(flatten)]
    pub chat: GenerateArgs,
}

/// Runs a steer subcommand.
pub fn run(cmd: SteerCommand) -> Result<()> {
    match cmd {
        SteerCommand::Extract(a) => {
            let device = parse_device(&a.device).map_err(anyhow::Error::msg)?;
            let m = LoadedModel::load(&ModelSource::parse(&a.model), LoadOptions::default(), &device).context("loading the model")?;
            let emotions: Vec<&str> = a.emotions.iter().map(String::as_str).collect();
            let vectors = EmotionVectors::extract(&m.model, &m.tokenizer, &a.model, &emotions, &QUERIES);
            vectors.save(&a.out)?;
            println!("{:<10} {}", "emotion", "|EV| per layer (first, middle, last)");
            for (e, v) in vectors.emotions.iter().zip(&vectors.vectors) {
                let norm = |l: &Vec<f32>| l.iter().map(|x| x * x).sum::<f32>().sqrt();
                println!("{e:<10} {:.3} {:.3} {:.3}", norm(&v[0]), norm(&v[v.len() / 2]), norm(&v[v.len() - 1]));
            }
            println!("wrote {} ({} emotions x {} layers, {} queries)", a.out.display(), vectors.emotions.len(), vectors.num_layers(), QUERIES.len());
            Ok(())
        }
        SteerCommand::Generate(a) => {
            anyhow::ensure!(a.emotion.len() == a.alpha.len(), "give one --alpha per --emotion ({} emotions, {} alphas)", a.emotion.len(), a.alpha.len());
            let mixture = a.emotion.into_iter().zip(a.alpha).collect();
            generate_steered(a.chat, Some((&a.vectors, mixture)))
        }
    }
}
