//! `selfemo train`: the SELF-EMO pipeline. An optional SFT warm start, then K self-play
//! iterations in which one policy recognises and responds, the flywheel keeps what its
//! smoothed-IoU rewards vouch for, and SELF-GRPO updates it; dev evaluations along the way (the
//! dev curve, the best-dev model in `best/`), checkpoints with exact resume, metrics, the test
//! evaluation of the best-dev model and an HF export.

use crate::checkpoint::{self, State};
use crate::collective::{Collective, Local};
use crate::config::RunConfig;
use crate::error::{AtPath, Result, TrainError};
use crate::evaluation::{DevCurve, DevResult, Evaluation, Evaluator, TestResult, test_best};
use crate::metrics_log::{self, Row};
use crate::run_dir::{plot_progress, plot_steps, read_flywheel, read_json, shown, summarise, write_json};
use crate::self_play::{IterationSummary, SYNTHETIC_IDS, step_items};
use crate::session::Session;
use crate::splits::TrainData;
use crate::step::{Step, steering_vectors, step_seconds};
use crate::trainable::{apply_trainable, restart_adapters};
use crate::warm_start::{WarmStartRecord, replay, warm_start_phase};
use burn::module::Module;
use selfemo_model::{CausalLm, LoadOptions, LoadedModel, ModelSource, parse_device};
use selfemo_selfplay::{EmotionDraw, Flywheel, RecognitionItem, Rerecogniser, Roles, store};
use std::cell::RefCell;
use std::io::Write;
use std::path::PathBuf;

/// What a run tells whoever watches it (the CLI draws a progress bar; tests watch nothing).
pub trait Progress: Sync {
    /// A line of the run's log: every one is also in `events.log`, but per-sample lines.
    fn line(&self, line: &str);
    /// Self-play step `done` of `total` finished; `summary` holds its key numbers.
    fn step(&self, done: u64, total: u64, summary: &str);
}

/// How this invocation runs.
#[derive(Clone, Copy, Default)]
pub struct TrainOptions<'a> {
    /// Continue from the latest checkpoint of the run folder.
    pub resume: bool,
    /// Stop after this many total steps (tests simulate a killed run with it).
    pub stop_after: Option<u64>,
    /// Who is told of the run's progress (`None`: nobody).
    pub progress: Option<&'a dyn Progress>,
    /// The ranks of a data-parallel run (`None`: this process alone). Each rank rolls out and
    /// trains on its share of every step; rank 0 alone writes the run folder.
    pub collective: Option<&'a dyn Collective>,
    /// The device this rank runs on, in place of the config's `device` (`None`: the config's;
    /// a run over `devices` sets it for each device's thread).
    pub device: Option<&'a str>,
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Dev scores before training.
    pub dev_before: DevResult,
    /// Dev scores of the last evaluation (`None` when stopped early).
    pub dev_after: Option<DevResult>,
    /// Every dev evaluation, in order.
    pub curve: Vec<Evaluation>,
    /// Each self-play iteration's numbers (empty when stopped early).
    pub iterations: Vec<IterationSummary>,
    /// Test scores of the best-dev model (`None` when stopped early or without test data).
    pub test: Option<TestResult>,
    /// Metric rows.
    pub rows: Vec<Row>,
}

/// Runs (or resumes) the SELF-EMO pipeline of `config`: optional warm start, then K self-play
/// iterations of {rollouts of both roles, flywheel filter, SELF-GRPO updates, dev evaluation},
/// then the test evaluation of the best-dev model and the HF export.
pub fn train(config: &RunConfig, options: TrainOptions) -> Result<Outcome> {
    if config.devices.len() > 1 && options.device.is_none() {
        return crate::devices::train_on_devices(config, options);
    }
    // 1. the run folder, the policy, the data
    let collective = options.collective.unwrap_or(&Local);
    let run_dir = config.run_dir();
    let events = if collective.is_main() {
        std::fs::create_dir_all(&run_dir).at(&run_dir)?;
        let config_file = run_dir.join("config.toml");
        let resolved = toml::to_string_pretty(config).at(&config_file)?;
        selfemo_datasets::atomic::write_atomically(&config_file, |f| f.write_all(resolved.as_bytes())).at(&config_file)?;
        let events_file = run_dir.join("events.log");
        Some(std::fs::OpenOptions::new().create(true).append(true).open(&events_file).at(&events_file)?)
    } else {
        None
    };
    let device_name = match (options.device, config.devices.as_slice()) {
        (Some(device), _) => device.to_string(),
        (None, [only]) => only.clone(),
        _ => crate::collective::this_rank_device(&config.device, collective),
    };
    let device = parse_device(&device_name).map_err(|e| TrainError::Config(format!("device: {e}")))?.autodiff();
    let load = LoadOptions { max_layers: (config.model.max_layers > 0).then_some(config.model.max_layers), ..Default::default() };
    let LoadedModel { model, config: model_config, tokenizer } = LoadedModel::load(&ModelSource::parse(&config.model.source), load, &device)?;
    let corpus = selfemo_datasets::load(config.data.dataset, config.data.path.as_deref())?;
    let data = TrainData::new(config, &corpus).map_err(TrainError::Config)?;
    let s = Session {
        config,
        corpus: &corpus,
        tok: &tokenizer,
        model_config: &model_config,
        run_dir: &run_dir,
        evaluator: Evaluator::new(config, &corpus, &tokenizer, collective),
        events: RefCell::new(events),
        progress: options.progress,
        collective,
    };
    if collective.size() > 1 {
        s.log(&format!("data parallel over {} ranks: each takes a share of every step's groups and update passes", collective.size()))?;
    }

    // 2. what trains, the optimiser, and where a resumed run stands
    let mut model = apply_trainable(model, &config.model.trainable, config.seed);
    let mut optim = config.grpo.adamw.build();
    let mut state = State { step: 0, rows: Vec::new() };
    let checkpoint = if options.resume { checkpoint::latest(&run_dir) } else { None };
    if let Some(dir) = &checkpoint {
        (model, optim, state) = checkpoint::load(dir, model, optim)?;
        s.log(&format!("resumed from {} at step {}", dir.display(), state.step))?;
    } else if options.resume {
        s.log("--resume: no checkpoint yet, starting from step 0")?;
    }
    let resumed = checkpoint.is_some();
    let mut curve = DevCurve::open(&run_dir, resumed.then_some(state.step), s.writes())?;
    let dev_before = match curve.entries.iter().find(|e| e.stage == "before") {
        Some(e) => e.dev.clone(),
        None => s.evaluate(&mut curve, &model.valid(), "before", 0, 0.0)?,
    };

    // 3. the warm start (done once: a resumed run restores its result from the checkpoint)
    let roles = Roles {
        recogniser: &config.prompt,
        responder: &config.selfplay.responder,
        rerecognition_prefix: &config.selfplay.rerecognition_prefix,
        judge: &config.selfplay.judge,
        labels: corpus.dataset.labels(),
        rewards: &config.rewards,
        max_prompt_tokens: config.data.max_prompt_tokens,
    };
    let warm_seconds = if resumed {
        run_dir
            .join("warm_start.json")
            .is_file()
            .then(|| read_json::<WarmStartRecord>(&run_dir.join("warm_start.json")))
            .transpose()?
            .map_or(0.0, |r| r.seconds)
    } else if config.warm_start.steps > 0 {
        let (m, seconds) = warm_start_phase(&s, model, &roles, &data.warm_start, &mut curve)?;
        model = if config.warm_start.merge_lora { restart_adapters(m, &config.model.trainable, config.seed.wrapping_add(1)) } else { m };
        seconds
    } else {
        0.0
    };

    // 4. self-play
    let (model, finished) = self_play(&s, model, &mut optim, &mut state, &mut curve, roles, &data, warm_seconds, options)?;
    if !finished {
        return Ok(Outcome { run_dir, dev_before, dev_after: None, curve: curve.entries, iterations: Vec::new(), test: None, rows: state.rows });
    }

    // 5. the best-dev model on test, plots, the export; every rank waits here for rank 0's
    // files of the last iteration (its summary, `best/`)
    collective.barrier();
    let sp = &config.selfplay;
    let iterations: Vec<IterationSummary> = if config.grpo.max_steps == 0 {
        Vec::new()
    } else {
        (1..=sp.iterations).map(|k| read_json(&run_dir.join(format!("iter-{k}/summary.json")))).collect::<Result<_>>()?
    };
    if s.writes() {
        plot_steps(&run_dir, &state.rows)?;
        plot_progress(&run_dir, &curve.entries, &iterations)?;
    }
    let dev_after = curve.entries.last().map(|e| e.dev.clone());
    let final_model = model.valid();
    let test = test_best(&s, &curve, &final_model, &device)?;
    s.export(&final_model, &run_dir.join("final"))?;
    Ok(Outcome { run_dir, dev_before, dev_after, curve: curve.entries, iterations, test, rows: state.rows })
}

/// The self-play steps from `state.step` on (none when `grpo.max_steps` = 0), each iteration
/// ended by its summary and dev evaluation. Returns the model and whether the run reached its
/// last step.
#[allow(clippy::too_many_arguments)]
fn self_play(
    s: &Session,
    mut model: CausalLm,
    optim: &mut burn::optim::ModuleOptimizer,
    state: &mut State,
    curve: &mut DevCurve,
    roles: Roles,
    data: &TrainData,
    warm_seconds: f64,
    options: TrainOptions,
) -> Result<(CausalLm, bool)> {
    let (c, g, sp) = (s.config, &s.config.grpo, &s.config.selfplay);
    let labels = s.corpus.dataset.labels();
    // The frozen policy as it enters self-play: the KL reference and the frozen re-recogniser.
    let needs_frozen = g.max_steps > 0 && (g.beta > 0.0 || sp.rerecogniser == Rerecogniser::Reference);
    let frozen = if needs_frozen { Some(checkpoint::reference(s.run_dir, &model, state.step, s.writes())?) } else { None };
    let vectors = steering_vectors(c, &model)?;
    let step = Step {
        config: c,
        tok: s.tok,
        roles,
        reserve: &data.reserve,
        vectors: vectors.as_ref(),
        frozen: frozen.as_ref(),
        settings: c.update_settings(s.tok.pad_id),
        schedule: g.schedule(),
        collective: s.collective,
    };
    let draw = EmotionDraw::new(sp.target_emotion, s.corpus);
    // The flywheel as of the checkpoint: rows of steps after it are redone identically.
    let mut flywheel = Flywheel::new(read_flywheel(s.run_dir, state.step)?);
    let train_seconds = |rows: &[Row]| warm_seconds + rows.iter().map(step_seconds).sum::<f64>();
    let finish = |k: u32, m: &CausalLm, rows: &[Row], flywheel: &Flywheel, curve: &mut DevCurve| -> Result<()> {
        let dev = s.evaluate(curve, m, &format!("iteration-{k}"), rows.last().map_or(0, |r| r.step), train_seconds(rows))?;
        let summary = summarise(k, rows, flywheel, iteration_steps(g.max_steps, sp.iterations, k), dev);
        if s.writes() {
            write_json(&s.run_dir.join(format!("iter-{k}/summary.json")), &summary)?;
        }
        s.log(&format!(
            "iteration {k}: kept {} recognition + {} synthetic (of {} + {}), reward recogniser {} responder {}",
            summary.kept.kept_recognition,
            summary.kept.kept_synthetic,
            summary.kept.recognition_seen,
            summary.kept.synthetic_seen,
            shown(summary.reward_recogniser),
            shown(summary.reward_responder)
        ))
    };
    // An iteration that ended at the checkpoint before its summary was written.
    if let Some(k) = (1..=sp.iterations as u32).find(|k| g.max_steps > 0 && iteration_steps(g.max_steps, sp.iterations, *k).1 == state.step)
        && !s.run_dir.join(format!("iter-{k}/summary.json")).is_file()
    {
        finish(k, &model.valid(), &state.rows, &flywheel, curve)?;
    }
    let last = options.stop_after.map_or(g.max_steps as u64, |x| x.min(g.max_steps as u64));
    let mut pool: (u32, Vec<RecognitionItem>) = (0, Vec::new());
    for t in state.step..last {
        let k = iteration_of(t, g.max_steps, sp.iterations);
        if pool.0 != k {
            pool = (k, flywheel.synthetic_items(k, labels, SYNTHETIC_IDS + (u64::from(k) << 24)));
        }
        let mut replay_seconds = 0.0;
        let iteration_step = t + 1 - iteration_steps(g.max_steps, sp.iterations, k).0;
        if k > 1 && sp.sft_epochs > 0.0 && iteration_step == 0 {
            (model, replay_seconds) = replay(s, model, &step.roles, &flywheel, k)?;
        }
        let items = step_items(t, iteration_step, g.prompts_per_step, &data.real, &pool.1, sp, s.corpus, c.data.context_window, c.seed, &draw);
        let (m, out) = step.run(model, optim, &mut flywheel, &items, k, t);
        model = m;
        let mut out = match out {
            Ok(o) => o,
            Err(e) => {
                s.log(&format!("step {}: {e}", t + 1))?;
                return Err(TrainError::NonFinite(format!("{e}; the last good checkpoint in {} is kept", s.run_dir.join("checkpoints").display())));
            }
        };
        if replay_seconds > 0.0 {
            out.row.values.insert("timing/replay".into(), replay_seconds);
        }
        if out.resampled > 0 {
            s.event(&format!("step {}: resampled {} degenerate groups", t + 1, out.resampled))?;
        }
        report_step(s, &out, k)?;
        state.rows.push(out.row);
        state.step = t + 1;
        if s.writes() {
            let iter_dir = s.run_dir.join(format!("iter-{k}"));
            std::fs::create_dir_all(&iter_dir).at(&iter_dir)?;
            store::write(&iter_dir.join("flywheel.parquet"), &flywheel.iteration_rows(k))?;
            let metrics = s.run_dir.join("metrics.parquet");
            metrics_log::write(&metrics, &state.rows).at(&metrics)?;
            if state.step.is_multiple_of(g.save_steps as u64) || state.step == g.max_steps as u64 || Some(state.step) == options.stop_after {
                checkpoint::save(s.run_dir, &model, optim, state)?;
            }
        }
        if iteration_steps(g.max_steps, sp.iterations, k).1 == state.step {
            finish(k, &model.valid(), &state.rows, &flywheel, curve)?;
        }
    }
    let finished = state.step >= g.max_steps as u64;
    Ok((model, finished))
}

/// The watcher's step line and the events' sample lines of a step.
fn report_step(s: &Session, out: &crate::step::StepOutput, k: u32) -> Result<()> {
    let (v, step) = (&out.row.values, out.row.step);
    let get = |key: &str| v.get(key).copied().unwrap_or(f64::NAN);
    if let Some(p) = s.progress {
        let total = s.config.grpo.max_steps as u64;
        p.step(step, total, &format!("reward {:.3}  format {:.2}  kl {:.4}", get("reward"), get("rewards/format/mean"), get("kl")));
        p.line(&format!(
            "step {step:>4}/{total} (iteration {k})  reward {:.3}  format {:.2}  recognition {:.3}  expression {:.3}  kept {}+{}  kl {:.4}  grad_norm {:.3}  {:.1}s",
            get("reward"),
            get("rewards/format/mean"),
            get("rewards/recognition/mean"),
            get("rewards/expression/mean"),
            out.counts.kept_recognition,
            out.counts.kept_synthetic,
            get("kl"),
            get("grad_norm"),
            step_seconds(&out.row)
        ));
    }
    if let Some((gr, x)) = out.recognition.first().and_then(|gr| gr.samples.first().map(|x| (gr, x))) {
        s.event(&format!("step {step}: recogniser sample [gold {}]: {:?}", gr.item.gold, x.reply))?;
    }
    if let Some((gr, x)) = out.expression.first().and_then(|gr| gr.samples.first().map(|x| (gr, x))) {
        s.event(&format!("step {step}: responder sample [e* {}, heard {:?}]: {:?}", gr.item.emotion, x.rerecognised.map(|e| e.name()), x.turn))?;
    }
    Ok(())
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
