//! `selfemo`: train, evaluate and inspect SELF-EMO emotion models from the command line.

mod bench;
mod data;
mod eval;
mod export;
mod model;
mod plot;
mod probe;
mod ranks;
mod report;
mod steer;
mod train;

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
    Data(data::DataCommand),
    /// Train with SELF-GRPO from a TOML run config (see configs/).
    Train(train::TrainArgs),
    /// Greedy, strict recognition scores (accuracy, weighted F1) of a model on dataset splits.
    Eval(eval::EvalArgs),
    /// Probes of a model's emotion judgements.
    #[command(subcommand)]
    Probe(ProbeCommand),
    /// Download and verify the embedded default model (SmolLM2-135M-Instruct) into the cache.
    FetchModel,
    /// Chat with a model: the default one, a GGUF, or an HF folder.
    Generate(model::GenerateArgs),
    /// Emotion vectors: extract them from a model, and chat steered by them.
    #[command(subcommand)]
    Steer(steer::SteerCommand),
    /// Benchmarks, reported against the machine's matmul peak measured in the same run.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Write a model for other tools: a complete HF folder (transformers, vLLM) or a GGUF file (llama.cpp).
    Export(export::ExportArgs),
    /// Charts across runs.
    #[command(subcommand)]
    Plot(PlotCommand),
}

#[derive(Subcommand)]
enum PlotCommand {
    /// One dev score against minutes of training, one line per run folder (an ablation's arms).
    DevCurves(plot::DevCurvesArgs),
}

#[derive(Subcommand)]
enum ProbeCommand {
    /// Yes/no questions per target about the gold label and a confusable one (EmotionHallucer):
    /// basic, hallucinated and pair accuracy, yes-bias and false-positive ratio.
    Hallucination(probe::ProbeArgs),
    /// The recogniser answers with a rationale and judges it (ERV): EPC (judged emotion =
    /// prediction) and EEA (judged emotion = gold).
    Faithfulness(probe::FaithArgs),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Prefill, decode (batch 1 and 8) and forward+backward throughput of the policy.
    Model(bench::model::BenchModelArgs),
    /// One full self-play SELF-GRPO step (both roles' rollouts, update) by phase, and the update's share of peak.
    Train(bench::train::BenchTrainArgs),
}

/// Lets glibc's malloc keep freed memory for reuse. A training pass allocates and frees tens of
/// MB per tensor; by default glibc serves each from a fresh mmap and returns it on free, so every
/// pass faults in and zeroes its memory again (a third of an SFT step's time on a 2-core CPU,
/// measured). Allocations up to 32 MB (glibc's largest mmap threshold) now come from the heap,
/// which is trimmed only past 2 GB free and grows 256 MB at a time.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it runs before any thread is started.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}

fn main() -> anyhow::Result<()> {
    keep_freed_memory();
    let cli = Cli::parse();
    match cli.command {
        Command::Data(cmd) => data::run(cmd),
        Command::Export(args) => export::run(args),
        Command::Train(args) => train::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Probe(ProbeCommand::Hallucination(args)) => probe::hallucination(args),
        Command::Probe(ProbeCommand::Faithfulness(args)) => probe::faithfulness(args),
        Command::FetchModel => model::fetch_model(),
        Command::Generate(args) => model::generate(args),
        Command::Steer(cmd) => steer::run(cmd),
        Command::Bench(BenchCommand::Model(args)) => bench::model::bench_model(args),
        Command::Bench(BenchCommand::Train(args)) => bench::train::bench_train(args),
        Command::Plot(PlotCommand::DevCurves(args)) => plot::dev_curves(args),
    }
}
