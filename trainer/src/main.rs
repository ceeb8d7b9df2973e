//! `selfemo`: train, evaluate and inspect SELF-EMO emotion models from the command line.

mod bench;
mod bench_train;
mod cli_data;
mod cli_eval;
mod cli_model;
mod cli_steer;

use clap::{Parser, Subcommand};

/// SELF-EMO: self-play emotion recognition and expression for language models.
#[derive(Parser)]
#[command(name = "selfemo", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect and convert the ERC datasets (MELD, EmoryNLP, IEMOCAP).
    #[command(subcommand)]
    Data(cli_data::DataCommand),
    /// Train with SELF-GRPO from a TOML run config (see configs/).
    Train {
        /// The run config.
        config: std::path::PathBuf,
        /// Continue from the run folder's latest checkpoint.
        #[arg(long)]
        resume: bool,
    },
    /// Greedy, strict recognition scores (accuracy, weighted F1) of a model on dataset splits.
    Eval(cli_eval::EvalArgs),
    /// Probes of a model's emotion judgements.
    #[command(subcommand)]
    Probe(ProbeCommand),
    /// Download and verify the embedded default model (SmolLM2-135M-Instruct) into the cache.
    FetchModel,
    /// Chat with a model: the default one, a GGUF, or an HF folder.
    Generate(cli_model::GenerateArgs),
    /// Emotion vectors: extract them from a model, and chat steered by them.
    #[command(subcommand)]
    Steer(cli_steer::SteerCommand),
    /// Benchmarks, reported against the machine's matmul peak measured in the same run.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum ProbeCommand {
    /// Yes/no questions per target about the gold label and a confusable one (EmotionHallucer):
    /// basic, hallucinated and pair accuracy, yes-bias and false-positive ratio.
    Hallucination(cli_eval::ProbeArgs),
    /// The recogniser answers with a rationale and judges it (ERV): EPC (judged emotion =
    /// prediction) and EEA (judged emotion = gold).
    Faithfulness(cli_eval::FaithArgs),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Prefill, decode (batch 1 and 8) and forward+backward throughput of the policy.
    Model(bench::BenchModelArgs),
    /// One full self-play SELF-GRPO step (both roles' rollouts, update) by phase, and the update's share of peak.
    Train(bench_train::BenchTrainArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Data(cmd) => cli_data::run(cmd),
        Command::Train { config, resume } => {
            let config = selfemo_trainer::config::RunConfig::load(&config).map_err(anyhow::Error::msg)?;
            let options = selfemo_trainer::run::TrainOptions { resume, stop_after: None, verbose: true };
            let out = selfemo_trainer::run::train(&config, options)?;
            println!("run folder: {}", out.run_dir.display());
            Ok(())
        }
        Command::Eval(args) => cli_eval::run(args),
        Command::Probe(ProbeCommand::Hallucination(args)) => cli_eval::hallucination(args),
        Command::Probe(ProbeCommand::Faithfulness(args)) => cli_eval::faithfulness(args),
        Command::FetchModel => cli_model::fetch_model(),
        Command::Generate(args) => cli_model::generate(args),
        Command::Steer(cmd) => cli_steer::run(cmd),
        Command::Bench(BenchCommand::Model(args)) => bench::bench_model(args),
        Command::Bench(BenchCommand::Train(args)) => bench_train::bench_train(args),
    }
}
