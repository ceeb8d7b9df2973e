//! `selfemo steer extract|generate`: emotion vectors of a model, and chat steered by them.

use crate::model::{GenerateArgs, generate_steered};
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
    /// Expression consistency and fluency of steered replies for each emotion and α: a table,
    /// JSON and two PNG plots.
    Sweep(SweepArgs),
}

/// Options of `selfemo steer sweep`.
#[derive(Args)]
pub struct SweepArgs {
    /// `default`, a .gguf file, or an HF folder (the model the vectors come from).
    #[arg(long, default_value = "default")]
    pub model: String,
    /// The vectors file from `selfemo steer extract`.
    #[arg(long, default_value = "emotion-vectors.safetensors")]
    pub vectors: PathBuf,
    /// Emotions (MELD labels) to sweep.
    #[arg(long, value_delimiter = ',', default_value = "joy,sadness,anger,fear,surprise,disgust")]
    pub emotions: Vec<String>,
    /// α values.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2,4,6,8")]
    pub alphas: Vec<f64>,
    /// Tokens per reply.
    #[arg(long, default_value_t = 32)]
    pub max_new_tokens: usize,
    /// Folder for sweep.json and the plots (consistency, p(e), log perplexity).
    #[arg(long, default_value = ".")]
    pub out_dir: PathBuf,
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
            println!("{:<10} |EV| per layer (first, middle, last)", "emotion");
            for (e, v) in vectors.emotions.iter().zip(&vectors.vectors) {
                let norm = |l: &Vec<f32>| l.iter().map(|x| x * x).sum::<f32>().sqrt();
                println!("{e:<10} {:.3} {:.3} {:.3}", norm(&v[0]), norm(&v[v.len() / 2]), norm(&v[v.len() - 1]));
            }
            println!("wrote {} ({} emotions x {} layers, {} queries)", a.out.display(), vectors.emotions.len(), vectors.num_layers(), QUERIES.len());
            Ok(())
        }
        SteerCommand::Sweep(a) => sweep(a),
        SteerCommand::Generate(a) => {
            anyhow::ensure!(a.emotion.len() == a.alpha.len(), "give one --alpha per --emotion ({} emotions, {} alphas)", a.emotion.len(), a.alpha.len());
            let mixture = a.emotion.into_iter().zip(a.alpha).collect();
            generate_steered(a.chat, Some((&a.vectors, mixture)))
        }
    }
}

fn sweep(a: SweepArgs) -> Result<()> {
    use selfemo_eval::plots::{Series, line_chart};
    use selfemo_eval::steer_sweep::{SWEEP_QUERIES, sweep};
    let device = parse_device("cpu").map_err(anyhow::Error::msg)?;
    let m = LoadedModel::load(&ModelSource::parse(&a.model), LoadOptions::default(), &device).context("loading the model")?;
    let vectors = EmotionVectors::load(&a.vectors)?;
    let rows = sweep(&m.model, &m.tokenizer, &vectors, &a.emotions, &a.alphas, &SWEEP_QUERIES, a.max_new_tokens)?;
    println!("{:<10} {:>6} {:>12} {:>9} {:>11}  example", "emotion", "alpha", "consistency", "p(e)", "perplexity");
    for r in &rows {
        let example: String = r.example.chars().take(60).collect();
        println!("{:<10} {:>6.1} {:>12.3} {:>9.4} {:>11.1}  {example:?}", r.emotion, r.alpha, r.consistency, r.p_emotion, r.perplexity);
    }
    std::fs::create_dir_all(&a.out_dir)?;
    crate::report::write_json(&a.out_dir.join("sweep.json"), &rows)?;
    let series = |f: fn(&selfemo_eval::steer_sweep::SweepRow) -> f64| -> Vec<Series> {
        a.emotions.iter().map(|e| Series { name: e.clone(), points: rows.iter().filter(|r| &r.emotion == e).map(|r| (r.alpha, f(r))).collect() }).collect()
    };
    line_chart(&a.out_dir.join("consistency.png"), "expression consistency: recogniser agrees with e", "alpha", &series(|r| r.consistency))?;
    line_chart(&a.out_dir.join("p_emotion.png"), "recogniser probability of e (softmax over labels)", "alpha", &series(|r| r.p_emotion))?;
    line_chart(&a.out_dir.join("perplexity.png"), "fluency: ln perplexity of the reply under the unsteered model", "alpha", &series(|r| r.perplexity.ln()))?;
    println!("wrote {}/sweep.json, consistency.png, p_emotion.png, perplexity.png (log perplexity)", a.out_dir.display());
    Ok(())
}
