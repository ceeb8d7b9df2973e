//! `selfemo plot dev-curves RUN...`: the dev curves of several runs on one chart.

use anyhow::{Context, Result};
use clap::Args;
use selfemo_trainer::evaluation::read_dev_curve;
use selfemo_trainer::run_dir::{DevMetric, plot_dev_comparison};
use std::path::PathBuf;

/// Options of `selfemo plot dev-curves`.
#[derive(Args)]
pub struct DevCurvesArgs {
    /// Run folders (each with a dev_curve.jsonl); the legend names each by its folder name.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// The PNG to write.
    #[arg(long)]
    pub out: PathBuf,
    /// The dev score on the y axis: accuracy, weighted-f1 or macro-f1.
    #[arg(long, default_value = "weighted-f1")]
    pub metric: DevMetric,
}

/// Reads every run's dev curve and draws them on one chart.
pub fn dev_curves(args: DevCurvesArgs) -> Result<()> {
    let runs = args
        .runs
        .iter()
        .map(|dir| {
            let name = dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
            Ok((name, read_dev_curve(dir)?))
        })
        .collect::<Result<Vec<_>>>()?;
    plot_dev_comparison(&args.out, args.metric, &runs).with_context(|| format!("cannot plot {}", args.out.display()))?;
    println!("wrote {}", args.out.display());
    Ok(())
}
