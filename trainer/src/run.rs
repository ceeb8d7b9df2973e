//! `selfemo train`: GRPO on emotion recognition (the recogniser role), with dev evaluation
//! before and after, checkpoints, exact resume, metrics and an HF export.

use crate::checkpoint::{self, State};
use crate::config::{RunConfig, Trainable};
use crate::grpo::{DegenerateGroups, Group, rollout, update};
use crate::metrics_log::{self, Row};
use crate::optim::learning_rate;
use crate::plots::{Series, line_chart};
use crate::warm_start::warm_start;
use crate::recognition::{DevResult, RecognitionPrompt, dev_reward, evaluate, prompts};
use anyhow::{Context, Result, bail};
use burn::module::{Lora, Module, ParamGroup};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use selfemo_datasets::{Corpus, Split};
use selfemo_model::{CausalLm, LoadOptions, LoadedModel, ModelSource, TextTokenizer, parse_device};
use selfemo_rewards::advantage::mean_std;
use selfemo_rewards::score_recognition_group;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

/// How this invocation runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrainOptions {
    /// Continue from the latest checkpoint of the run folder.
    pub resume: bool,
    /// Stop after this many total steps (tests simulate a killed run with it).
    pub stop_after: Option<u64>,
    /// Print a line per step.
    pub verbose: bool,
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Dev scores and reward before training.
    pub dev_before: DevResult,
    /// Dev scores and reward after training (`None` when stopped early).
    pub dev_after: Option<DevResult>,
    /// Metric rows.
    pub rows: Vec<Row>,
}

/// Freezes what does not train (and attaches LoRA adapters, initialised from `seed`).
pub fn apply_trainable(model: CausalLm, trainable: &Trainable, seed: u64) -> CausalLm {
    match trainable {
        Trainable::All => model,
        Trainable::Lora { rank, alpha, targets } => {
            let paths: Vec<String> = (0..model.num_layers())
                .flat_map(|l| {
                    targets.iter().map(move |t| {
                        let block = if ["gate_proj", "up_proj", "down_proj"].contains(&t.as_str()) { "mlp" } else { "self_attn" };
                        format!("model.layers.{l}.{block}.{t}.weight")
                    })
                })
                .collect();
            model.model.embed_tokens.weight.device().seed(seed);
            model.apply_lora(Lora::new(*rank, *alpha).set_param_group(ParamGroup::from_paths(paths)))
        }
        Trainable::TopLayers { layers } => {
            let mut m = model.freeze();
            let n = m.model.layers.len();
            let layers_vec = std::mem::take(&mut m.model.layers);
            m.model.layers = layers_vec.into_iter().enumerate().map(|(i, l)| if i + layers >= n { l.unfreeze() } else { l }).collect();
            m.model.norm = m.model.norm.unfreeze();
            m
        }
    }
}

/// Runs (or resumes) the training described by `config`.
pub fn train(config: &RunConfig, options: TrainOptions) -> Result<Outcome> {
    let run_dir = config.run_dir();
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let resolved = toml::to_string_pretty(config)?;
    selfemo_datasets::atomic::write_atomically(&run_dir.join("config.toml"), |f| f.write_all(resolved.as_bytes()))?;
    let mut events = std::fs::OpenOptions::new().create(true).append(true).open(run_dir.join("events.log"))?;
    let device = parse_device(&config.device).map_err(anyhow::Error::msg)?.autodiff();
    let load = LoadOptions { max_layers: (config.model.max_layers > 0).then_some(config.model.max_layers), ..Default::default() };
    let loaded = LoadedModel::load(&ModelSource::parse(&config.model.source), load, &device).context("loading the policy")?;
    let LoadedModel { model, config: model_config, tokenizer } = loaded;
    let corpus = selfemo_datasets::load(config.data.dataset, config.data.path.as_deref())?;
    let g = &config.grpo;

    // Prompts: a seeded shuffle of the train targets, cycled; dev: the first `dev_limit`.
    let mut train_targets = corpus.targets(Split::Train);
    if train_targets.is_empty() {
        bail!("{} has no labelled train utterances", corpus.dataset);
    }
    train_targets.shuffle(&mut rand::rngs::StdRng::seed_from_u64(config.seed));
    if config.data.train_limit > 0 {
        train_targets.truncate(config.data.train_limit);
    }
    let needed = (g.max_steps * g.prompts_per_step).min(train_targets.len());
    let make = |targets: &[selfemo_datasets::Target]| {
        prompts(&corpus, targets, &config.prompt, config.data.context_window, config.data.max_prompt_tokens, &tokenizer)
    };
    let train_prompts = make(&train_targets[..needed]);
    // Fresh prompts for dynamic sampling: the targets after those the steps use.
    let reserve = if g.degenerate_groups == DegenerateGroups::Resample { make(&train_targets[needed..(2 * needed).min(train_targets.len())]) } else { Vec::new() };
    let mut dev_targets = corpus.targets(Split::Dev);
    if config.eval.dev_limit > 0 {
        dev_targets.truncate(config.eval.dev_limit);
    }
    let dev_prompts = make(&dev_targets);

    let reference = (g.beta > 0.0).then(|| model.valid());
    let mut model = apply_trainable(model, &config.model.trainable, config.seed);
    let mut optim = g.adamw.build();
    let mut state = State { step: 0, rows: Vec::new() };
    if options.resume {
        match checkpoint::latest(&run_dir) {
            Some(dir) => {
                (model, optim, state) = checkpoint::load(&dir, model, optim).with_context(|| format!("resuming from {}", dir.display()))?;
                writeln!(events, "resumed from {} at step {}", dir.display(), state.step)?;
            }
            None => writeln!(events, "--resume: no checkpoint yet, starting from step 0")?,
        }
    }
    let eval = |m: &CausalLm, tok: &TextTokenizer| {
        let (report, texts) = evaluate(m, tok, &dev_prompts, &corpus, config.eval.max_new_tokens, config.eval.batch_size, &mut |_| ());
        DevResult { reward: dev_reward(&texts, &dev_prompts, &corpus, &config.rewards), report }
    };
    let before_path = run_dir.join("dev_before.json");
    let dev_before: DevResult = if state.step > 0 && before_path.is_file() {
        serde_json::from_slice(&std::fs::read(&before_path)?).context("reading dev_before.json")?
    } else {
        let r = eval(&model.valid(), &tokenizer);
        std::fs::write(&before_path, serde_json::to_vec_pretty(&r)?)?;
        r
    };
    if options.verbose {
        print_dev("before", &dev_before);
    }

    if state.step == 0 && config.warm_start.steps > 0 {
        let ws = &config.warm_start;
        let unused = &train_targets[needed.min(train_targets.len() - 1)..];
        let examples = make(&unused[..(ws.steps * ws.batch_size).min(unused.len())]);
        let (m, losses) = warm_start(model, &mut g.adamw.build(), &examples, &tokenizer, ws)?;
        model = m;
        let (first, last) = (losses.first().copied().unwrap_or(0.0), losses.last().copied().unwrap_or(0.0));
        writeln!(events, "warm start: {} SFT steps on {} examples, loss {first:.4} -> {last:.4}", losses.len(), examples.len())?;
        if options.verbose {
            println!("warm start: {} SFT steps on {} examples, loss {first:.4} -> {last:.4}", losses.len(), examples.len());
        }
    }
    let settings = g.update_settings(tokenizer.pad_id);
    let last = options.stop_after.map_or(g.max_steps as u64, |s| s.min(g.max_steps as u64));
    let bar = if options.verbose { indicatif::ProgressBar::new(g.max_steps as u64) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  eta {eta}").expect("a valid template"));
    bar.set_position(state.step);
    for step in state.step..last {
        let batch: Vec<(usize, &RecognitionPrompt)> = (0..g.prompts_per_step)
            .map(|i| {
                let k = step as usize * g.prompts_per_step + i;
                (k, &train_prompts[k % train_prompts.len()])
            })
            .collect();
        let ids: Vec<(usize, Vec<u32>)> = batch.iter().map(|(k, p)| (*k, p.ids.clone())).collect();
        let t0 = Instant::now();
        let policy = model.valid(); // π_old: rolls out, and refills degenerate groups
        let mut groups = rollout(&policy, &ids, g.num_generations, &g.sampling(), config.seed, step, &tokenizer.eos_ids, tokenizer.pad_id);
        let generate_s = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let (components, sample_text) = score(&mut groups, &batch, &corpus, &tokenizer, config);
        if !reserve.is_empty() {
            let n = resample_degenerate(&mut groups, step, &reserve, needed, &policy, &corpus, &tokenizer, config);
            if n > 0 {
                writeln!(events, "step {}: resampled {n} degenerate groups", step + 1)?;
            }
        }
        let score_s = t1.elapsed().as_secs_f64();
        drop(policy);
        let lr = learning_rate(step as usize, g.max_steps, g.warmup_steps, g.learning_rate, g.min_lr_ratio);
        let t2 = Instant::now();
        let (m, stats) = update(model, reference.as_ref(), &mut optim, &groups, &settings, lr);
        model = m;
        let stats = match stats {
            Ok(s) => s,
            Err(e) => {
                writeln!(events, "step {}: {e}", step + 1)?;
                bail!("{e}; the last good checkpoint in {} is kept", run_dir.join("checkpoints").display());
            }
        };
        let update_s = t2.elapsed().as_secs_f64();
        let rewards: Vec<f64> = groups.iter().flat_map(|g| g.samples.iter().map(|s| s.reward)).collect();
        let lengths: Vec<f64> = groups.iter().flat_map(|g| g.samples.iter().map(|s| s.completion.len() as f64)).collect();
        let clipped = groups.iter().flat_map(|g| &g.samples).filter(|s| s.truncated).count() as f64 / lengths.len() as f64;
        let tokens: f64 = groups.iter().flat_map(|g| g.samples.iter().map(|s| (g.prompt.len() + s.completion.len()) as f64)).sum();
        let group_std = groups.iter().map(|g| mean_std(&g.samples.iter().map(|s| s.reward).collect::<Vec<_>>()).1).sum::<f64>() / groups.len() as f64;
        let mut values = BTreeMap::from([
            ("loss".to_string(), stats.loss),
            ("reward".into(), mean_std(&rewards).0),
            ("reward_std".into(), group_std),
            ("frac_reward_zero_std".into(), stats.frac_reward_zero_std),
            ("kl".into(), stats.loss_stats.kl),
            ("entropy".into(), mean_std(&groups.iter().flat_map(|g| g.samples.iter().flat_map(|s| s.entropies.iter().copied())).collect::<Vec<_>>()).0),
            ("clip_ratio/low_mean".into(), stats.loss_stats.clip_low),
            ("clip_ratio/high_mean".into(), stats.loss_stats.clip_high),
            ("completions/mean_length".into(), mean_std(&lengths).0),
            ("completions/clipped_ratio".into(), clipped),
            ("grad_norm".into(), stats.grad_norm),
            ("learning_rate".into(), lr),
            ("timing/generate".into(), generate_s),
            ("timing/score".into(), score_s),
            ("timing/update".into(), update_s),
            ("tokens_per_second".into(), tokens / (generate_s + score_s + update_s)),
        ]);
        for (name, v) in components {
            values.insert(format!("rewards/{name}/mean"), v);
        }
        let row = Row { step: step + 1, values };
        let v = &row.values;
        let (format, recognition) = (v.get("rewards/format/mean").copied().unwrap_or(0.0), v.get("rewards/recognition/mean").copied().unwrap_or(0.0));
        bar.set_message(format!("reward {:.3}  format {format:.2}  kl {:.4}", v["reward"], v["kl"]));
        bar.inc(1);
        if options.verbose {
            bar.suspend(|| {
                println!(
                    "step {:>4}/{}  reward {:.3}  format {format:.2}  recognition {recognition:.3}  kl {:.4}  grad_norm {:.3}  len {:.1}  {:.1}s",
                    step + 1,
                    g.max_steps,
                    v["reward"],
                    v["kl"],
                    v["grad_norm"],
                    v["completions/mean_length"],
                    generate_s + score_s + update_s
                )
            });
        }
        writeln!(events, "step {}: sample completion: {sample_text:?}", step + 1)?;
        state.rows.push(row);
        state.step = step + 1;
        metrics_log::write(&run_dir.join("metrics.parquet"), &state.rows)?;
        if state.step % g.save_steps as u64 == 0 || state.step == g.max_steps as u64 || Some(state.step) == options.stop_after {
            checkpoint::save(&run_dir, &model, &optim, &state)?;
        }
    }
    if state.step < g.max_steps as u64 {
        return Ok(Outcome { run_dir, dev_before, dev_after: None, rows: state.rows });
    }
    bar.finish_and_clear();
    plot_curves(&run_dir, &state.rows)?;
    let rollout_model = model.valid();
    let dev_after = eval(&rollout_model, &tokenizer);
    std::fs::write(run_dir.join("dev_after.json"), serde_json::to_vec_pretty(&dev_after)?)?;
    if options.verbose {
        print_dev("after", &dev_after);
    }
    let final_model = LoadedModel { model: rollout_model, config: model_config, tokenizer };
    final_model.export(&run_dir.join("final")).context("exporting the final model")?;
    Ok(Outcome { run_dir, dev_before, dev_after: Some(dev_after), rows: state.rows })
}

/// Fills each sample's reward; returns the mean of each reward component and one sample text.
pub fn score(
    groups: &mut [Group],
    batch: &[(usize, &RecognitionPrompt)],
    corpus: &Corpus,
    tok: &TextTokenizer,
    config: &RunConfig,
) -> (BTreeMap<&'static str, f64>, String) {
    let mut sums: BTreeMap<&'static str, (f64, f64)> = BTreeMap::new();
    let mut sample = String::new();
    for (group, (_, prompt)) in groups.iter_mut().zip(batch) {
        let texts: Vec<String> = group.samples.iter().map(|s| format!("{}{}", prompt.reply_prefix, tok.decode(&s.completion, true))).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let scored = score_recognition_group(&refs, &[prompt.gold], corpus.dataset.labels(), &config.rewards, None);
        for (s, (_, b)) in group.samples.iter_mut().zip(&scored) {
            s.reward = b.total;
            s.consistency = b.consistency.unwrap_or(0.0);
            for (name, v) in b.components() {
                let e = sums.entry(name).or_default();
                e.0 += v;
                e.1 += 1.0;
            }
        }
        if sample.is_empty() {
            sample = format!("[gold {}] {}", prompt.gold, texts[0]);
        }
    }
    (sums.into_iter().map(|(k, (s, n))| (k, s / n)).collect(), sample)
}

/// PNG curves of the run in `plots/`: reward (with its components), KL and loss per step.
fn plot_curves(run_dir: &std::path::Path, rows: &[Row]) -> Result<()> {
    let dir = run_dir.join("plots");
    std::fs::create_dir_all(&dir)?;
    let series = |name: &str, key: &str| Series {
        name: name.into(),
        points: rows.iter().filter_map(|r| r.values.get(key).map(|v| (r.step as f64, *v))).collect(),
    };
    let mut rewards = vec![series("reward", "reward")];
    let components: std::collections::BTreeSet<&String> = rows.iter().flat_map(|r| r.values.keys()).filter(|k| k.starts_with("rewards/")).collect();
    rewards.extend(components.into_iter().map(|k| series(k.trim_start_matches("rewards/").trim_end_matches("/mean"), k)));
    line_chart(&dir.join("reward.png"), "reward per step", "step", &rewards)?;
    line_chart(&dir.join("kl.png"), "KL to the reference per step", "step", &[series("kl", "kl")])?;
    line_chart(&dir.join("loss.png"), "loss per step", "step", &[series("loss", "loss")])?;
    Ok(())
}

fn print_dev(when: &str, r: &DevResult) {
    let s = &r.report;
    println!("dev {when}: reward {:.4}  accuracy {:.4}  weighted F1 {:.4}  invalid {:.3}", r.reward, s.accuracy, s.weighted_f1, s.invalid_rate);
}

/// Dynamic sampling: each group whose rewards are all equal is replaced by a group of a fresh
/// prompt from `reserve` (one round; ids after the `first_id` run prompts, so seeds differ).
/// Returns how many were replaced.
#[allow(clippy::too_many_arguments)]
fn resample_degenerate(
    groups: &mut [Group],
    step: u64,
    reserve: &[RecognitionPrompt],
    first_id: usize,
    policy: &CausalLm,
    corpus: &Corpus,
    tok: &TextTokenizer,
    config: &RunConfig,
) -> usize {
    let equal = |g: &Group| g.samples.iter().all(|s| (s.reward - g.samples[0].reward).abs() <= 1e-12);
    let stale: Vec<usize> = (0..groups.len()).filter(|i| equal(&groups[*i])).collect();
    if stale.is_empty() {
        return 0;
    }
    let batch: Vec<(usize, &RecognitionPrompt)> = (0..stale.len())
        .map(|j| {
            let k = (step as usize * config.grpo.prompts_per_step + j) % reserve.len();
            (first_id + k, &reserve[k])
        })
        .collect();
    let ids: Vec<(usize, Vec<u32>)> = batch.iter().map(|(k, p)| (*k, p.ids.clone())).collect();
    let g = &config.grpo;
    let mut fresh = rollout(policy, &ids, g.num_generations, &g.sampling(), config.seed, step, &tok.eos_ids, tok.pad_id);
    score(&mut fresh, &batch, corpus, tok, config);
    let n = stale.len();
    for (i, group) in stale.into_iter().zip(fresh) {
        groups[i] = group;
    }
    n
}
