//! `selfemo plot dev-curves RUN...`: the dev curves of several runs on one chart.

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
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
    /// The dev score on the y axis.
    #[arg(long, value_enum, default_value = "weighted-f1")]
    pub metric: Metric,
}

/// A dev score to plot.
#[derive(Clone, Copy, ValueEnum)]
pub enum Metric {
    /// Accuracy.
    Accuracy,
    /// Weighted F1.
    WeightedF1,
    /// Macro F1.
    MacroF1,
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
    let metric = match args.metric {
        Metric::Accuracy => DevMetric::Accuracy,
        Metric::WeightedF1 => DevMetric::WeightedF1,
        Metric::MacroF1 => DevMetric::MacroF1,
    };
    plot_dev_comparison(&args.out, metric, &runs).with_context(|| format!("cannot plot {}", args.out.display()))?;
    println!("wrote {}", args.out.display());
    Ok(())
}
