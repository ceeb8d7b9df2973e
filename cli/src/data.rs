//! `selfemo data stats|prepare`.

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use selfemo_datasets::{Dataset, load, stats, unified};
use std::path::PathBuf;

/// Dataset commands.
#[derive(Subcommand)]
pub enum DataCommand {
    /// Print per-split dialogue, utterance and per-label counts.
    Stats {
        /// meld, emorynlp or iemocap.
        #[arg(long, value_parser = parse_dataset)]
        dataset: Dataset,
        /// Folder to read instead of the shipped data/ (required for IEMOCAP).
        #[arg(long)]
        path: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write datasets to one unified Parquet file.
    Prepare {
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Comma-separated datasets to include.
        #[arg(long, value_delimiter = ',', value_parser = parse_dataset, default_value = "meld,emorynlp")]
        datasets: Vec<Dataset>,
        /// IEMOCAP folder (release layout or DAG-ERC JSON), needed when iemocap is listed.
        #[arg(long)]
        iemocap: Option<PathBuf>,
    },
}

/// Parses a dataset name for clap.
pub fn parse_dataset(s: &str) -> Result<Dataset, String> {
    Dataset::from_name(s).ok_or_else(|| format!("unknown dataset {s:?}: expected meld, emorynlp or iemocap"))
}

/// Runs a data command.
pub fn run(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Stats { dataset, path, json } => {
            let corpus = load(dataset, path.as_deref())?;
            let s = stats::stats(&corpus);
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print!("{}", stats::render(&corpus, &s));
            }
        }
        DataCommand::Prepare { out, datasets, iemocap } => {
            let mut corpora = Vec::new();
            for d in datasets {
                let path = if d == Dataset::Iemocap {
                    match &iemocap {
                        Some(p) => Some(p.as_path()),
                        None => bail!("iemocap is licensed and not shipped: pass --iemocap <folder>"),
                    }
                } else {
                    None
                };
                corpora.push(load(d, path)?);
            }
            unified::write(&out, &corpora).with_context(|| format!("writing {}", out.display()))?;
            let rows: usize = corpora.iter().flat_map(|c| &c.dialogues).map(|d| d.utterances.len()).sum();
            println!("wrote {} ({rows} utterances)", out.display());
        }
    }
    Ok(())
}
