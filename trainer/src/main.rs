//! `selfemo`: train, evaluate and inspect SELF-EMO emotion models from the command line.

mod cli_data;

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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Data(cmd) => cli_data::run(cmd),
    }
}
