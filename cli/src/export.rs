//! `selfemo export`: a run folder, an HF checkpoint folder or any `--model` source, as a
//! complete HF folder (with a model card) or a GGUF file, written under a temporary name and
//! renamed into place.

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use selfemo_model::export::hf::HfOptions;
use selfemo_model::export::{ExportDtype, gguf, hf};
use selfemo_model::{LoadOptions, LoadedModel, ModelSource, fetch};
use selfemo_trainer::config::RunConfig;
use selfemo_trainer::evaluation::TestResult;
use std::path::{Path, PathBuf};

/// Options of `selfemo export`.
#[derive(Args)]
pub struct ExportArgs {
    /// A run folder (its `best/` unless --checkpoint final), a checkpoint of one
    /// (`<run>/checkpoints/step-N`), an HF folder, a .gguf file, or `default`.
    pub source: String,
    /// `hf` (a folder transformers and vLLM load) or `gguf` (one file llama.cpp loads).
    #[arg(long, value_enum)]
    pub format: Format,
    /// f32, f16, bf16, or q8_0 (GGUF only).
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// The folder (hf) or file (gguf) to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Which model of a run folder: the best on dev, or the last.
    #[arg(long, value_enum, default_value_t = Checkpoint::Best)]
    pub checkpoint: Checkpoint,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
    /// Largest safetensors shard in MB (hf); bigger models get shards and an index.
    #[arg(long, default_value_t = 5000)]
    pub max_shard_mb: u64,
}

/// The export formats.
#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// An HF folder.
    Hf,
    /// A GGUF file.
    Gguf,
}

/// Which model of a run folder.
#[derive(Clone, Copy, ValueEnum)]
pub enum Checkpoint {
    /// `best/`: the best dev evaluation.
    Best,
    /// `final/`: the model at the end of the run.
    Final,
}

/// What the model card says about where a model comes from.
struct Provenance {
    /// The base model's name.
    base_model: String,
    /// Its licence (an SPDX-like id), when known.
    license: Option<String>,
    /// The run that trained it, when the source is a run folder or one of its checkpoints.
    run: Option<RunRecord>,
    /// Which of the run's models (`best/`, `final/`, `checkpoint …`).
    stage: String,
}

/// A run folder's config and test scores.
struct RunRecord {
    folder: PathBuf,
    config_text: String,
    config: RunConfig,
    test: Option<TestResult>,
}

/// Exports a model.
pub fn run(args: ExportArgs) -> Result<()> {
    let dtype: ExportDtype = args.dtype.parse().map_err(anyhow::Error::msg)?;
    if matches!(args.format, Format::Hf) && dtype == ExportDtype::Q8_0 {
        bail!("--dtype q8_0 is a GGUF type: --format hf takes f32, f16 or bf16");
    }
    if args.out.exists() && !args.force {
        bail!("{} exists (pass --force to replace it)", args.out.display());
    }
    let (loaded, provenance) = load_source(&args.source, args.checkpoint)?;
    let parent = args.out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let name = args.out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "export".into());
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = match args.format {
        Format::Hf => {
            let options = HfOptions { dtype, max_shard_bytes: args.max_shard_mb.saturating_mul(1_000_000) };
            hf::write_folder(&loaded, &tmp, options)
                .map_err(anyhow::Error::from)
                .and_then(|_| std::fs::write(tmp.join("README.md"), model_card(&provenance, &loaded, dtype)).context("writing README.md"))
        }
        Format::Gguf => {
            gguf::write(&loaded, &tmp, dtype, &format!("{} (selfemo)", provenance.base_model), provenance.license.as_deref()).map_err(anyhow::Error::from)
        }
    };
    let placed = written.and_then(|_| replace(&tmp, &args.out, args.force));
    if placed.is_err() {
        let _ = std::fs::remove_dir_all(&tmp).or_else(|_| std::fs::remove_file(&tmp));
    }
    placed?;
    println!("{}", args.out.display());
    Ok(())
}

/// Moves the finished `tmp` onto `out`, removing an existing `out` first when `force`.
fn replace(tmp: &Path, out: &Path, force: bool) -> Result<()> {
    if out.exists() {
        if !force {
            bail!("{} appeared while exporting (pass --force to replace it)", out.display());
        }
        let removed = if out.is_dir() { std::fs::remove_dir_all(out) } else { std::fs::remove_file(out) };
        removed.with_context(|| format!("removing the old {}", out.display()))?;
    }
    std::fs::rename(tmp, out).with_context(|| format!("moving the export to {}", out.display()))
}

/// The model and where it comes from. A folder with `model.bpk` is a trainer checkpoint
/// (`<run>/checkpoints/step-N`); a folder with `config.toml` a run folder; a folder with
/// `config.json` an HF folder; anything else a `--model` source.
fn load_source(source: &str, checkpoint: Checkpoint) -> Result<(LoadedModel, Provenance)> {
    let path = Path::new(source);
    let device = burn::tensor::Device::flex();
    if path.join("model.bpk").is_file() {
        let run_dir = path.parent().and_then(Path::parent).filter(|r| r.join("config.toml").is_file());
        let run_dir = run_dir
            .with_context(|| format!("{}: a checkpoint is read in its run folder (<run>/checkpoints/step-N, beside <run>/config.toml)", path.display()))?;
        let run = run_record(run_dir, None)?;
        let c = &run.config;
        let options = LoadOptions { max_layers: (c.model.max_layers > 0).then_some(c.model.max_layers), ..Default::default() };
        let mut base = LoadedModel::load(&ModelSource::parse(&c.model.source), options, &device)
            .with_context(|| format!("loading the run's base model {}", c.model.source))?;
        let structured = selfemo_trainer::trainable::apply_trainable(base.model, &c.model.trainable, c.seed);
        base.model = selfemo_trainer::checkpoint::load_weights(path, structured)?;
        let (base_model, license) = base_of(&c.model.source);
        return Ok((base, Provenance { base_model, license, run: Some(run), stage: format!("checkpoint {}", path.display()) }));
    }
    if path.join("config.toml").is_file() {
        let sub = match checkpoint {
            Checkpoint::Best => "best",
            Checkpoint::Final => "final",
        };
        let dir = path.join(sub);
        for file in ["config.json", "tokenizer.json"] {
            if !dir.join(file).is_file() {
                bail!("{}: no {sub}/{file}: the run has not exported this model (is it still running, or was it stopped early?)", path.display());
            }
        }
        let run = run_record(path, Some(&path.join("test.json")))?;
        let mut loaded =
            LoadedModel::load(&ModelSource::HfDir(dir.clone()), LoadOptions::default(), &device).with_context(|| format!("loading {}", dir.display()))?;
        // Run folders written before exports carried tokenizer_config.json: the template and
        // special tokens the run prompted with are its base model's.
        if !dir.join("tokenizer_config.json").is_file() {
            let base = ModelSource::parse(&run.config.model.source);
            loaded.tokenizer =
                LoadedModel::load_tokenizer(&base).with_context(|| format!("loading the tokenizer of the run's base model {}", run.config.model.source))?;
        }
        let (base_model, license) = base_of(&run.config.model.source);
        return Ok((loaded, Provenance { base_model, license, run: Some(run), stage: format!("{sub}/") }));
    }
    if path.is_dir() && !path.join("config.json").is_file() {
        bail!("{}: neither a run folder (config.toml), a checkpoint (model.bpk) nor an HF folder (config.json)", path.display());
    }
    let loaded = LoadedModel::load(&ModelSource::parse(source), LoadOptions::default(), &device).with_context(|| format!("loading {source}"))?;
    let (base_model, license) = base_of(source);
    Ok((loaded, Provenance { base_model, license, run: None, stage: String::new() }))
}

/// A run folder's config, and its test scores when `test_file` is given and present.
fn run_record(folder: &Path, test_file: Option<&Path>) -> Result<RunRecord> {
    let config_file = folder.join("config.toml");
    let config_text = std::fs::read_to_string(&config_file).with_context(|| format!("reading {}", config_file.display()))?;
    let config = RunConfig::load(&config_file).map_err(anyhow::Error::msg)?;
    let test = match test_file {
        Some(file) if file.is_file() => {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            Some(serde_json::from_str(&text).with_context(|| format!("reading {}", file.display()))?)
        }
        _ => None,
    };
    Ok(RunRecord { folder: folder.to_path_buf(), config_text, config, test })
}

/// The base model's name and licence for a `--model` source: the embedded default is
/// SmolLM2-135M-Instruct (Apache-2.0); other sources are named by their path.
fn base_of(source: &str) -> (String, Option<String>) {
    match ModelSource::parse(source) {
        ModelSource::Default => (fetch::BASE_MODEL.to_string(), Some(fetch::BASE_LICENSE.to_string())),
        _ => (source.to_string(), None),
    }
}

/// The folder's README.md: what the model is, how it was trained and scored, its licence.
fn model_card(p: &Provenance, m: &LoadedModel, dtype: ExportDtype) -> String {
    let license = p.license.as_deref().unwrap_or("other");
    let mut card = format!(
        "---\nlicense: {license}\nbase_model: {}\nlibrary_name: transformers\npipeline_tag: text-generation\ntags:\n- selfemo\n- emotion-recognition\n---\n\n",
        p.base_model
    );
    let c = &m.config;
    card += &format!(
        "# {} fine-tuned by selfemo\n\nA {:?} decoder ({} layers, width {}, vocabulary {}), exported by `selfemo export` in {}. \
         Prompt it with the chat template in `tokenizer_config.json`; generation stops at any id in \
         `generation_config.json`'s `eos_token_id`.\n\n",
        p.base_model,
        c.architecture,
        c.num_hidden_layers,
        c.hidden_size,
        c.vocab_size,
        dtype.name()
    );
    match &p.run {
        None => card += "Not trained by a selfemo run: the weights are the source model's.\n\n",
        Some(run) => {
            card += &format!("## Training\n\nRun folder `{}` ({}), dataset {}.\n\n", run.folder.display(), p.stage, run.config.data.dataset.name());
            if let Some(test) = &run.test {
                card += &format!(
                    "## Test scores ({}, the best-dev model)\n\n| mode | targets | accuracy | weighted F1 | macro F1 |\n| --- | --- | --- | --- | --- |\n",
                    test.stage
                );
                for (mode, r) in &test.reports {
                    let targets: usize = r.per_class.iter().map(|c| c.support).sum();
                    card += &format!("| {mode} | {targets} | {:.3} | {:.3} | {:.3} |\n", r.accuracy, r.weighted_f1, r.macro_f1);
                }
                card += "\n`score` ranks the label names by log-probability; `generate` parses greedy answers; \
                         `score_adjusted` adds per-label biases fitted on dev (`test.json`), which these weights alone do not carry.\n\n";
            }
            card += &format!("## Config\n\n```toml\n{}\n```\n\n", run.config_text.trim_end());
        }
    }
    card += &format!("## Licence\n\nThe base model's: {license}.\n");
    card
}
