//! `selfemo train`: the SELF-EMO pipeline. One policy recognises and responds in self-play,
//! the flywheel keeps what its smoothed-IoU rewards vouch for, SELF-GRPO updates it, over K
//! iterations; with dev evaluation per iteration, checkpoints, exact resume, metrics, the test
//! evaluation of the best-dev iteration and an HF export.

use crate::checkpoint::{self, State};
use crate::config::{RunConfig, Trainable, WarmStartKind};
use crate::grpo::{DegenerateGroups, update};
use crate::policy::{ModelPolicy, render};
use crate::scores::Report;
use crate::self_play::{IterationSummary, SYNTHETIC_IDS, count_metrics, counts_from_metrics, role_metrics, step_items, to_groups};
use crate::metrics_log::{self, Row};
use crate::plots::{Series, line_chart};
use crate::splits::TrainSplits;
use crate::warm_start::{Example, completion_ids, label_example, warm_start};
use crate::recognition::{DevResult, dev_reward, evaluate, prompts};
use anyhow::{Context, Result, bail};
use burn::module::{Lora, Module, ParamGroup};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use selfemo_datasets::{Corpus, Split, Target};
use selfemo_model::{CausalLm, EmotionVectors, LoadOptions, LoadedModel, ModelSource, TextTokenizer, parse_device};
use selfemo_rewards::advantage::mean_std;
use selfemo_selfplay::{Flywheel, FlywheelRow, Rationale, RecognitionGroup, RecognitionItem, Roles, Verdict, rationales, recognise, respond, store};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
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
    /// Each self-play iteration's numbers (empty when stopped early).
    pub iterations: Vec<IterationSummary>,
    /// Test scores of the best-dev iteration (`None` when stopped early or without test data).
    pub test: Option<TestResult>,
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

/// Runs (or resumes) the SELF-EMO pipeline of `config`: optional warm start, then K self-play
/// iterations of {rollouts of both roles, flywheel filter, SELF-GRPO updates, dev evaluation},
/// then the test evaluation of the best-dev iteration and the HF export.
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
    let (g, sp) = (&config.grpo, &config.selfplay);
    let w = config.data.context_window;

    // Real items: a seeded shuffle of the train targets, cycled; dev: the first `dev_limit`.
    let mut train_targets = corpus.targets(Split::Train);
    if train_targets.is_empty() {
        bail!("{} has no labelled train utterances", corpus.dataset);
    }
    train_targets.shuffle(&mut rand::rngs::StdRng::seed_from_u64(config.seed));
    if config.data.train_limit > 0 {
        train_targets.truncate(config.data.train_limit);
    }
    // GRPO prompts, the refill reserve of dynamic sampling and the warm start: disjoint slices.
    let needed = g.max_steps * g.prompts_per_step;
    let reserve_size = if g.degenerate_groups == DegenerateGroups::Resample { needed } else { 0 };
    let ws = &config.warm_start;
    let splits = TrainSplits::new(train_targets.len(), needed, reserve_size, ws.steps * ws.batch_size);
    let item = |k: usize, t: Target| RecognitionItem::from_target(&corpus, t, w, k as u64).map(|i| (t, i));
    let real: Vec<(Target, RecognitionItem)> = train_targets[splits.grpo.clone()].iter().enumerate().filter_map(|(k, t)| item(k, *t)).collect();
    let reserve: Vec<RecognitionItem> =
        train_targets[splits.reserve.clone()].iter().enumerate().filter_map(|(k, t)| item(splits.reserve.start + k, *t).map(|x| x.1)).collect();
    let make = |targets: &[Target]| prompts(&corpus, targets, &config.prompt, w, config.data.max_prompt_tokens, &tokenizer);
    let mut dev_targets = corpus.targets(Split::Dev);
    if config.eval.dev_limit > 0 {
        dev_targets.truncate(config.eval.dev_limit);
    }
    let dev_prompts = make(&dev_targets);

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
        let (report, predictions) = evaluate(m, tok, &dev_prompts, &corpus, config.eval.max_new_tokens, config.eval.batch_size, &mut |_| ());
        DevResult { reward: dev_reward(&predictions, &corpus, &config.rewards), report }
    };
    let before_path = run_dir.join("dev_before.json");
    let dev_before: DevResult = if state.step > 0 && before_path.is_file() {
        read_json(&before_path)?
    } else {
        let r = eval(&model.valid(), &tokenizer);
        std::fs::write(&before_path, serde_json::to_vec_pretty(&r)?)?;
        r
    };
    if options.verbose {
        print_dev("before", &dev_before);
    }

    let roles = Roles {
        recogniser: &config.prompt,
        responder: &sp.responder,
        rerecognition_prefix: &sp.rerecognition_prefix,
        judge: &sp.judge,
        labels: corpus.dataset.labels(),
        rewards: &config.rewards,
        max_prompt_tokens: config.data.max_prompt_tokens,
    };
    if state.step == 0 && ws.steps > 0 {
        let unused = &train_targets[splits.warm_start.clone()];
        let examples: Vec<Example> = match ws.kind {
            WarmStartKind::Label => make(unused).iter().map(|p| label_example(p, &tokenizer)).collect(),
            WarmStartKind::Rationale => {
                let items: Vec<RecognitionItem> = unused.iter().enumerate().filter_map(|(k, t)| RecognitionItem::from_target(&corpus, *t, w, (RATIONALE_IDS + k) as u64)).collect();
                let writer = model.valid();
                let policy = ModelPolicy { model: &writer, tok: &tokenizer, sampling: g.sampling(), score_rows: config.eval.batch_size, vectors: None };
                let written = rationales(&policy, &roles, &items, &ws.rationale_hint, config.seed);
                write_rationales(&run_dir.join("warm_start_rationales.jsonl"), &written)?;
                let count = |v: Verdict| written.iter().filter(|r| r.verdict() == v).count();
                writeln!(
                    events,
                    "warm start: kept {} of {} self-written rationales; rejected {} naming an emotion, {} whose label-free re-prediction disagrees, {} empty",
                    count(Verdict::Kept),
                    written.len(),
                    count(Verdict::NamesEmotion),
                    count(Verdict::Disagrees),
                    count(Verdict::Empty)
                )?;
                written
                    .iter()
                    .filter(|r| r.kept())
                    .map(|r| (tokenizer.encode(&render(&tokenizer, &roles.recognition_prompt(&policy, &r.item))), completion_ids(&r.completion(), &tokenizer)))
                    .collect()
            }
        };
        let (m, losses) = warm_start(model, &mut g.adamw.build(), &examples, &tokenizer, ws)?;
        model = m;
        let (first, last) = (losses.first().copied().unwrap_or(0.0), losses.last().copied().unwrap_or(0.0));
        let line = format!("warm start: {} SFT steps on {} examples, loss {first:.4} -> {last:.4}", losses.len(), examples.len());
        writeln!(events, "{line}")?;
        if options.verbose {
            println!("{line}");
        }
    }
    // The KL reference: the policy as it enters SELF-GRPO, saved so a resumed run has it too.
    let reference = if g.beta > 0.0 { Some(checkpoint::reference(&run_dir, &model, state.step)?) } else { None };
    // Steered responder sampling: this model's emotion vectors and the α of each sample.
    let vectors = match &sp.steering {
        Some(s) => {
            let v = EmotionVectors::load(&s.vectors).with_context(|| format!("selfplay.steering.vectors: {}", s.vectors.display()))?;
            anyhow::ensure!(
                v.num_layers() == model.num_layers(),
                "selfplay.steering.vectors: {} holds vectors for {} layers (model {}), the policy has {}",
                s.vectors.display(),
                v.num_layers(),
                v.model,
                model.num_layers()
            );
            Some(v)
        }
        None => None,
    };
    let alphas: &[f64] = sp.steering.as_ref().map_or(&[], |s| &s.alphas);
    // The flywheel as of the checkpoint: rows of steps after it are redone identically.
    let mut flywheel = Flywheel::new(read_flywheel(&run_dir, state.step)?);
    let mut pool: (u32, Vec<RecognitionItem>) = (0, Vec::new());
    // The best dev iteration so far, from the summaries of the iterations the checkpoint finished.
    let mut best: Option<Best> = None;
    for k in (1..=sp.iterations as u32).filter(|k| iteration_steps(g.max_steps, sp.iterations, *k).1 <= state.step) {
        let path = run_dir.join(format!("iter-{k}/summary.json"));
        if path.is_file() {
            best = Some(Best::better(best.take(), k, read_json::<IterationSummary>(&path)?.dev.report.weighted_f1));
        }
    }
    let export = |m: &CausalLm, dir: &Path| LoadedModel { model: m.clone(), config: model_config.clone(), tokenizer: tokenizer.clone() }.export(dir);
    let finish = |k: u32, m: &CausalLm, rows: &[Row], flywheel: &Flywheel, best: &mut Option<Best>, events: &mut std::fs::File| -> Result<()> {
        let summary = summarise(k, rows, flywheel, iteration_steps(g.max_steps, sp.iterations, k), eval(m, &tokenizer));
        write_json(&run_dir.join(format!("iter-{k}")).join("summary.json"), &summary)?;
        let line = format!(
            "iteration {k}: kept {} recognition + {} synthetic (of {} + {}), reward recogniser {:.3} responder {:.3}, dev accuracy {:.4} weighted F1 {:.4}",
            summary.kept.kept_recognition,
            summary.kept.kept_synthetic,
            summary.kept.recognition_seen,
            summary.kept.synthetic_seen,
            summary.reward_recogniser,
            summary.reward_responder,
            summary.dev.report.accuracy,
            summary.dev.report.weighted_f1
        );
        writeln!(events, "{line}")?;
        if options.verbose {
            println!("{line}");
        }
        let better = Best::better(best.clone(), k, summary.dev.report.weighted_f1);
        if best.as_ref() != Some(&better) {
            export(m, &run_dir.join("best")).context("exporting the best-dev model")?;
            *best = Some(better);
        }
        Ok(())
    };
    // An iteration that ended at the checkpoint before its summary was written.
    if let Some(k) = (1..=sp.iterations as u32).find(|k| iteration_steps(g.max_steps, sp.iterations, *k).1 == state.step)
        && !run_dir.join(format!("iter-{k}/summary.json")).is_file()
    {
        finish(k, &model.valid(), &state.rows, &flywheel, &mut best, &mut events)?;
    }

    let (settings, schedule) = (config.update_settings(tokenizer.pad_id), g.schedule());
    let last = options.stop_after.map_or(g.max_steps as u64, |s| s.min(g.max_steps as u64));
    let bar = if options.verbose { indicatif::ProgressBar::new(g.max_steps as u64) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  eta {eta}").expect("a valid template"));
    bar.set_position(state.step);
    for step in state.step..last {
        let k = iteration_of(step, g.max_steps, sp.iterations);
        if pool.0 != k {
            pool = (k, flywheel.synthetic_items(k, corpus.dataset.labels(), SYNTHETIC_IDS + (u64::from(k) << 24)));
        }
        if k > 1 && sp.sft_epochs > 0.0 && step + 1 == iteration_steps(g.max_steps, sp.iterations, k).0 {
            // The recognition rows iteration k−1 kept, trained on before iteration k's first step.
            let kept = flywheel.recognition_examples(k - 1, corpus.dataset.labels(), &config.prompt.reply_prefix, SYNTHETIC_IDS + (u64::from(k) << 24) + (1 << 23));
            let examples: Vec<Example> = {
                let m = model.valid();
                let policy = ModelPolicy { model: &m, tok: &tokenizer, sampling: g.sampling(), score_rows: config.eval.batch_size, vectors: None };
                let prompt_ids = |item: &RecognitionItem| tokenizer.encode(&render(&tokenizer, &roles.recognition_prompt(&policy, item)));
                kept.iter().map(|(item, completion)| (prompt_ids(item), completion_ids(completion, &tokenizer))).collect()
            };
            let steps = (sp.sft_epochs * examples.len() as f64 / sp.sft_batch_size as f64).ceil() as usize;
            let settings = crate::config::WarmStartSection { steps, batch_size: sp.sft_batch_size, learning_rate: sp.sft_learning_rate, ..Default::default() };
            write_replay(&run_dir.join(format!("iter-{k}/replay.jsonl")), &kept, steps * sp.sft_batch_size)?;
            let (m, losses) = warm_start(model, &mut g.adamw.build(), &examples, &tokenizer, &settings)?;
            model = m;
            writeln!(events, "iteration {k}: {} SFT steps on {} kept recognition rows of iteration {}, loss {:?}", losses.len(), examples.len(), k - 1, losses.first().zip(losses.last()))?;
        }
        let items = step_items(step, g.prompts_per_step, &real, &pool.1, sp, &corpus, w, config.seed);
        let t0 = Instant::now();
        let rollout_model = model.valid(); // π_old: both roles, and the refill of degenerate groups
        let policy = ModelPolicy { model: &rollout_model, tok: &tokenizer, sampling: g.sampling(), score_rows: config.eval.batch_size, vectors: vectors.as_ref() };
        let mut recognition = recognise(&policy, &roles, &items.recognition, g.num_generations, config.seed, step);
        let generate_s = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let expression = respond(&policy, &roles, &items.expression, g.num_generations, config.seed, step, alphas);
        let respond_s = t1.elapsed().as_secs_f64();
        let t2 = Instant::now();
        let mut counts = flywheel.admit(k, step + 1, &recognition, &expression, &sp.flywheel);
        if !reserve.is_empty() {
            let equal = |gr: &RecognitionGroup| gr.samples.iter().all(|s| (s.reward.total - gr.samples[0].reward.total).abs() <= 1e-12);
            let stale: Vec<usize> = (0..recognition.len()).filter(|i| equal(&recognition[*i])).collect();
            if !stale.is_empty() {
                let fresh_items: Vec<RecognitionItem> = (0..stale.len()).map(|j| reserve[(step as usize * g.prompts_per_step + j) % reserve.len()].clone()).collect();
                let fresh = recognise(&policy, &roles, &fresh_items, g.num_generations, config.seed, step);
                counts.add(&flywheel.admit(k, step + 1, &fresh, &[], &sp.flywheel));
                writeln!(events, "step {}: resampled {} degenerate groups", step + 1, stale.len())?;
                for (i, group) in stale.into_iter().zip(fresh) {
                    recognition[i] = group;
                }
            }
        }
        let iter_dir = run_dir.join(format!("iter-{k}"));
        std::fs::create_dir_all(&iter_dir)?;
        store::write(&iter_dir.join("flywheel.parquet"), &flywheel.iteration_rows(k))?;
        let groups = to_groups(&recognition, &expression);
        let score_s = t2.elapsed().as_secs_f64();
        drop(policy);
        drop(rollout_model);
        let t3 = Instant::now();
        let (m, stats) = update(model, reference.as_ref(), &mut optim, &groups, &settings, &schedule, step as usize * g.num_iterations.max(1));
        model = m;
        let stats = match stats {
            Ok(s) => s,
            Err(e) => {
                writeln!(events, "step {}: {e}", step + 1)?;
                bail!("{e}; the last good checkpoint in {} is kept", run_dir.join("checkpoints").display());
            }
        };
        let update_s = t3.elapsed().as_secs_f64();
        let samples = || groups.iter().flat_map(|g| g.samples.iter().map(move |s| (g, s)));
        let rewards: Vec<f64> = samples().map(|(_, s)| s.reward).collect();
        let lengths: Vec<f64> = samples().map(|(_, s)| s.completion.len() as f64).collect();
        let clipped = samples().filter(|(_, s)| s.truncated).count() as f64 / lengths.len().max(1) as f64;
        let tokens: f64 = samples().map(|(g, s)| (g.prompt.len() + s.completion.len()) as f64).sum();
        let group_std = groups.iter().map(|g| mean_std(&g.samples.iter().map(|s| s.reward).collect::<Vec<_>>()).1).sum::<f64>() / groups.len().max(1) as f64;
        let seconds = generate_s + respond_s + score_s + update_s;
        let mut values = BTreeMap::from([
            ("loss".to_string(), stats.loss),
            ("reward".into(), mean_std(&rewards).0),
            ("reward_std".into(), group_std),
            ("frac_reward_zero_std".into(), stats.frac_reward_zero_std),
            ("kl".into(), stats.loss_stats.kl),
            ("entropy".into(), mean_std(&samples().flat_map(|(_, s)| s.entropies.iter().copied()).collect::<Vec<_>>()).0),
            ("clip_ratio/low_mean".into(), stats.loss_stats.clip_low),
            ("clip_ratio/high_mean".into(), stats.loss_stats.clip_high),
            ("completions/mean_length".into(), mean_std(&lengths).0),
            ("completions/clipped_ratio".into(), clipped),
            ("grad_norm".into(), stats.grad_norm),
            ("learning_rate".into(), stats.learning_rate),
            ("timing/generate".into(), generate_s),
            ("timing/respond".into(), respond_s),
            ("timing/score".into(), score_s),
            ("timing/update".into(), update_s),
            ("tokens_per_second".into(), tokens / seconds),
            ("selfplay/iteration".into(), f64::from(k)),
            ("selfplay/synthetic_prompts".into(), items.recognition.iter().filter(|i| i.synthetic).count() as f64),
        ]);
        values.extend(stats.importance_weight.map(|w| ("steering/is_weight/mean".to_string(), w)));
        values.extend(role_metrics(&recognition, &expression));
        values.extend(count_metrics(&counts));
        let row = Row { step: step + 1, values };
        let v = &row.values;
        let get = |key: &str| v.get(key).copied().unwrap_or(f64::NAN);
        bar.set_message(format!("reward {:.3}  format {:.2}  kl {:.4}", v["reward"], get("rewards/format/mean"), v["kl"]));
        bar.inc(1);
        if options.verbose {
            bar.suspend(|| {
                println!(
                    "step {:>4}/{} (iteration {k})  reward {:.3}  format {:.2}  recognition {:.3}  expression {:.3}  kept {}+{}  kl {:.4}  grad_norm {:.3}  {:.1}s",
                    step + 1,
                    g.max_steps,
                    v["reward"],
                    get("rewards/format/mean"),
                    get("rewards/recognition/mean"),
                    get("rewards/expression/mean"),
                    counts.kept_recognition,
                    counts.kept_synthetic,
                    v["kl"],
                    v["grad_norm"],
                    seconds
                )
            });
        }
        if let Some(s) = recognition.first().and_then(|gr| gr.samples.first().map(|s| (gr, s))) {
            writeln!(events, "step {}: recogniser sample [gold {}]: {:?}", step + 1, s.0.item.gold, s.1.reply)?;
        }
        if let Some(s) = expression.first().and_then(|gr| gr.samples.first().map(|s| (gr, s))) {
            writeln!(events, "step {}: responder sample [e* {}, heard {:?}]: {:?}", step + 1, s.0.item.emotion, s.1.rerecognised.map(|e| e.name()), s.1.turn)?;
        }
        state.rows.push(row);
        state.step = step + 1;
        metrics_log::write(&run_dir.join("metrics.parquet"), &state.rows)?;
        if state.step % g.save_steps as u64 == 0 || state.step == g.max_steps as u64 || Some(state.step) == options.stop_after {
            checkpoint::save(&run_dir, &model, &optim, &state)?;
        }
        if iteration_steps(g.max_steps, sp.iterations, k).1 == state.step {
            bar.suspend(|| finish(k, &model.valid(), &state.rows, &flywheel, &mut best, &mut events))?;
        }
    }
    if state.step < g.max_steps as u64 {
        return Ok(Outcome { run_dir, dev_before, dev_after: None, iterations: Vec::new(), test: None, rows: state.rows });
    }
    bar.finish_and_clear();
    let iterations: Vec<IterationSummary> =
        (1..=sp.iterations).map(|k| read_json(&run_dir.join(format!("iter-{k}/summary.json")))).collect::<Result<_>>()?;
    plot_curves(&run_dir, &state.rows)?;
    plot_iterations(&run_dir, &dev_before, &iterations)?;
    let dev_after = iterations.last().expect("at least one iteration").dev.clone();
    std::fs::write(run_dir.join("dev_after.json"), serde_json::to_vec_pretty(&dev_after)?)?;
    if options.verbose {
        print_dev("after", &dev_after);
    }
    let final_model = model.valid();
    let test = test_best(config, &corpus, &tokenizer, &final_model, best.as_ref(), &device, &run_dir, options.verbose)?;
    export(&final_model, &run_dir.join("final")).context("exporting the final model")?;
    Ok(Outcome { run_dir, dev_before, dev_after: Some(dev_after), iterations, test, rows: state.rows })
}

/// The iteration whose dev weighted F1 is the best so far (`best/` holds its model).
#[derive(Debug, Clone, PartialEq)]
pub struct Best {
    /// k.
    pub iteration: u32,
    /// Its dev weighted F1.
    pub weighted_f1: f64,
}

impl Best {
    /// `current`, or iteration `k` with dev weighted F1 `f1` when that is at least as good
    /// (ties go to the later iteration).
    pub fn better(current: Option<Best>, k: u32, f1: f64) -> Best {
        match current {
            Some(b) if b.weighted_f1 > f1 => b,
            _ => Best { iteration: k, weighted_f1: f1 },
        }
    }
}

/// Test scores of the best-dev iteration's model (`test.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    /// Which iteration's model.
    pub iteration: u32,
    /// Accuracy, F1 and the rest on the test targets.
    pub report: Report,
}

/// Evaluates the best-dev model on the test split (the final model when it is the best, else
/// the export in `best/`); `None` when the dataset has no test targets.
#[allow(clippy::too_many_arguments)]
fn test_best(
    config: &RunConfig,
    corpus: &Corpus,
    tok: &TextTokenizer,
    final_model: &CausalLm,
    best: Option<&Best>,
    device: &burn::tensor::Device,
    run_dir: &Path,
    verbose: bool,
) -> Result<Option<TestResult>> {
    let mut targets = corpus.targets(Split::Test);
    if config.eval.test_limit > 0 {
        targets.truncate(config.eval.test_limit);
    }
    if targets.is_empty() {
        return Ok(None);
    }
    let last = config.selfplay.iterations as u32;
    let iteration = best.map_or(last, |b| b.iteration);
    let loaded;
    let model = if iteration == last {
        final_model
    } else {
        loaded = LoadedModel::load(&ModelSource::HfDir(run_dir.join("best")), LoadOptions::default(), device).context("loading the best-dev model")?.model.valid();
        &loaded
    };
    let test_prompts = prompts(corpus, &targets, &config.prompt, config.data.context_window, config.data.max_prompt_tokens, tok);
    let (report, _) = evaluate(model, tok, &test_prompts, corpus, config.eval.max_new_tokens, config.eval.batch_size, &mut |_| ());
    if verbose {
        println!("test (iteration {iteration}, best dev): accuracy {:.4}  weighted F1 {:.4}  invalid {:.3}  ({} targets)", report.accuracy, report.weighted_f1, report.invalid_rate, targets.len());
    }
    let result = TestResult { iteration, report };
    write_json(&run_dir.join("test.json"), &result)?;
    Ok(Some(result))
}

/// The first and last step (from 1) of iteration `k` when `max_steps` are split evenly over
/// `iterations`: iteration k covers steps ⌊(k−1)·n/K⌋+1 ..= ⌊k·n/K⌋.
pub fn iteration_steps(max_steps: usize, iterations: usize, k: u32) -> (u64, u64) {
    let bound = |j: usize| (j * max_steps / iterations.max(1)) as u64;
    (bound(k as usize - 1) + 1, bound(k as usize))
}

/// The iteration (from 1) of step `step` (from 0).
pub fn iteration_of(step: u64, max_steps: usize, iterations: usize) -> u32 {
    (1..=iterations as u32).find(|k| step < iteration_steps(max_steps, iterations, *k).1).unwrap_or(iterations as u32)
}

/// The rows kept by steps ≤ `upto` in every `iter-<k>/flywheel.parquet` of the run, in order.
fn read_flywheel(run_dir: &Path, upto: u64) -> Result<Vec<FlywheelRow>> {
    let mut rows = Vec::new();
    for k in 1.. {
        let path = run_dir.join(format!("iter-{k}/flywheel.parquet"));
        if !path.is_file() {
            break;
        }
        rows.extend(store::read(&path)?.into_iter().filter(|r| r.step <= upto));
    }
    Ok(rows)
}

/// Iteration `k`'s summary from its metric rows, its flywheel rows and its dev result.
fn summarise(k: u32, rows: &[Row], flywheel: &Flywheel, steps: (u64, u64), dev: DevResult) -> IterationSummary {
    let mine: Vec<&Row> = rows.iter().filter(|r| (steps.0..=steps.1).contains(&r.step)).collect();
    let mean = |key: &str| {
        let v: Vec<f64> = mine.iter().filter_map(|r| r.values.get(key).copied()).collect();
        if v.is_empty() { f64::NAN } else { mean_std(&v).0 }
    };
    IterationSummary {
        iteration: k,
        steps,
        kept: counts_from_metrics(mine.iter().map(|r| &r.values)),
        flywheel_rows: flywheel.iteration_rows(k).len(),
        synthetic_prompts: mine.iter().map(|r| r.values.get("selfplay/synthetic_prompts").copied().unwrap_or(0.0) as usize).sum(),
        reward_recogniser: mean("reward/recogniser"),
        reward_responder: mean("reward/responder"),
        expression: mean("rewards/expression/mean"),
        dev,
    }
}

/// Ids of warm-start rationale items (apart from every rollout item's).
const RATIONALE_IDS: usize = 1 << 42;

/// The warm start's rationales as JSON lines: source, gold, rationale, re-prediction, verdict.
fn write_rationales(path: &Path, written: &[Rationale]) -> Result<()> {
    let lines = written.iter().map(|r| {
        serde_json::json!({
            "source": r.item.source, "gold": r.item.gold.name(), "rationale": r.text,
            "repredicted": r.repredicted.map(|e| e.name()), "verdict": r.verdict(), "kept": r.kept(),
        })
    });
    write_json_lines(path, lines)
}

/// The SFT examples an iteration replays from the previous one's kept rows, in training order
/// (`seen` examples: the rows cycled), as JSON lines: source, label, completion.
fn write_replay(path: &Path, kept: &[(RecognitionItem, String)], seen: usize) -> Result<()> {
    let lines = (0..seen.min(kept.len() * seen)).map(|i| {
        let (item, completion) = &kept[i % kept.len()];
        serde_json::json!({ "source": item.source, "label": item.gold.name(), "completion": completion })
    });
    write_json_lines(path, lines)
}

fn write_json_lines(path: &Path, lines: impl Iterator<Item = serde_json::Value>) -> Result<()> {
    let text: String = lines.map(|l| format!("{l}\n")).collect();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    selfemo_datasets::atomic::write_atomically(path, |f| f.write_all(text.as_bytes())).with_context(|| format!("writing {}", path.display()))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    serde_json::from_slice(&std::fs::read(path).with_context(|| format!("reading {}", path.display()))?).with_context(|| format!("parsing {}", path.display()))
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value)?;
    selfemo_datasets::atomic::write_atomically(path, |f| f.write_all(&bytes)).with_context(|| format!("writing {}", path.display()))
}

/// Dev accuracy and weighted F1 per iteration (0 = before training) and the flywheel's kept
/// counts per iteration, as `plots/iterations.png` and `plots/flywheel.png`.
fn plot_iterations(run_dir: &Path, before: &DevResult, iterations: &[IterationSummary]) -> Result<()> {
    let dir = run_dir.join("plots");
    std::fs::create_dir_all(&dir)?;
    let dev = |name: &str, f: &dyn Fn(&DevResult) -> f64| Series {
        name: name.into(),
        points: std::iter::once((0.0, f(before))).chain(iterations.iter().map(|s| (f64::from(s.iteration), f(&s.dev)))).collect(),
    };
    line_chart(
        &dir.join("iterations.png"),
        "dev scores per self-play iteration (0 = before)",
        "iteration",
        &[dev("accuracy", &|d| d.report.accuracy), dev("weighted F1", &|d| d.report.weighted_f1), dev("reward", &|d| d.reward)],
    )?;
    let kept = |name: &str, f: &dyn Fn(&IterationSummary) -> usize| Series {
        name: name.into(),
        points: iterations.iter().map(|s| (f64::from(s.iteration), f(s) as f64)).collect(),
    };
    line_chart(
        &dir.join("flywheel.png"),
        "flywheel rows kept per iteration",
        "iteration",
        &[kept("recognition", &|s| s.kept.kept_recognition), kept("synthetic", &|s| s.kept.kept_synthetic), kept("duplicates", &|s| s.kept.duplicates)],
    )?;
    Ok(())
}

/// PNG curves of the run in `plots/`: reward (with its components), KL and loss per step.
fn plot_curves(run_dir: &Path, rows: &[Row]) -> Result<()> {
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

