//! `selfemo train CONFIG [--set KEY=VALUE]... [--resume]`: the run loop of selfemo-trainer with a progress bar.

use anyhow::Result;
use clap::Args;
use selfemo_trainer::config::RunConfig;
use selfemo_trainer::run::{Progress, TrainOptions, train};
use std::path::PathBuf;

/// Options of `selfemo train`.
#[derive(Args)]
pub struct TrainArgs {
    /// The run config.
    pub config: PathBuf,
    /// Override a config field, by its dotted TOML key: `--set seed=1 --set name=run-seed1`
    /// (repeatable; a later one wins; the run folder's config.toml records the result). Set
    /// `name` too, or the run writes to the same folder as the file's own.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Continue from the run folder's latest checkpoint.
    #[arg(long)]
    pub resume: bool,
}

/// A progress bar over the self-play steps, with the run's log lines printed above it.
struct Bar(indicatif::ProgressBar);

impl Progress for Bar {
    fn line(&self, line: &str) {
        self.0.suspend(|| println!("{line}"));
    }

    fn step(&self, done: u64, total: u64, summary: &str) {
        self.0.set_length(total);
        self.0.set_position(done);
        self.0.set_message(summary.to_string());
    }
}

/// Runs (or resumes) the training of a config and prints where the run folder is. Started by
/// an MPI launcher (`mpirun -np N`, `srun`), every process is one rank of a data-parallel run
/// and rank 0 alone prints and writes.
pub fn run(args: TrainArgs) -> Result<()> {
    let config = RunConfig::load_with(&args.config, &args.overrides).map_err(anyhow::Error::msg)?;
    let ranks = crate::ranks::ranks()?;
    let bar = indicatif::ProgressBar::new(config.grpo.max_steps as u64);
    bar.set_style(indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  eta {eta}").expect("a valid template"));
    let progress = Bar(bar);
    let watcher: Option<&dyn Progress> = ranks.is_main().then_some(&progress);
    let out = train(&config, TrainOptions { resume: args.resume, stop_after: None, progress: watcher, collective: Some(ranks.as_ref()), device: None })?;
    progress.0.finish_and_clear();
    if ranks.is_main() {
        println!("run folder: {}", out.run_dir.display());
    }
    Ok(())
}
