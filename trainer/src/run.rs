//! `selfemo train`: the SELF-EMO pipeline. An optional SFT warm start, then K self-play
//! iterations in which one policy recognises and responds, the flywheel keeps what its
//! smoothed-IoU rewards vouch for, and SELF-GRPO updates it; dev evaluations along the way (the
//! dev curve, the best-dev model in `best/`), checkpoints with exact resume, metrics, the test
//! evaluation of the best-dev model and an HF export.

use crate::calibration::LogitAdjustment;
use crate::checkpoint::{self, State};
use crate::config::{RunConfig, WarmStartKind};
use crate::evaluation::{DevCurve, DevResult, EvalMode, Evaluation, Evaluator};
use crate::metrics_log::{self, Row};
use crate::policy::{ModelPolicy, render};
use crate::recognition::prompts;
use crate::run_dir::{plot_progress, plot_steps, read_flywheel, read_json, summarise, write_json, write_json_lines};
use crate::scores::Report;
use crate::self_play::{IterationSummary, SYNTHETIC_IDS, step_items};
use crate::splits::TrainData;
use crate::step::{Step, step_seconds};
use crate::trainable::apply_trainable;
use crate::warm_start::{Example, SftPlan, completion_ids, label_example, sft};
use anyhow::{Context, Result, bail};
use burn::module::Module;
use selfemo_datasets::{Corpus, Target};
use selfemo_model::{CausalLm, EmotionVectors, LoadOptions, LoadedModel, ModelConfig, ModelSource, TextTokenizer, parse_device};
use selfemo_selfplay::{EmotionDraw, Flywheel, Rationale, RecognitionItem, Rerecogniser, Roles, Verdict, rationales, store};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// Test scores of the best-dev model (`test.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    /// Which evaluation's model (`warm_start-<step>`, `iteration-<k>`).
    pub stage: String,
    /// Per mode (`score`, `generate`, `score_adjusted`): accuracy, F1 and the rest.
    pub reports: BTreeMap<String, Report>,
    /// The logit adjustment fitted on that model's dev scores, when configured.
    pub logit_adjustment: Option<LogitAdjustment>,
}

/// What every phase of a run reads.
struct Session<'a> {
    config: &'a RunConfig,
    corpus: &'a Corpus,
    tok: &'a TextTokenizer,
    model_config: &'a ModelConfig,
    run_dir: &'a Path,
    evaluator: Evaluator<'a>,
    events: RefCell<std::fs::File>,
    verbose: bool,
}

impl Session<'_> {
    /// A line in `events.log`, and on the console when verbose.
    fn log(&self, line: &str) -> Result<()> {
        writeln!(self.events.borrow_mut(), "{line}")?;
        if self.verbose {
            println!("{line}");
        }
        Ok(())
    }

    /// An HF folder of `model`.
    fn export(&self, model: &CausalLm, dir: &Path) -> Result<()> {
        let loaded = LoadedModel { model: model.clone(), config: self.model_config.clone(), tokenizer: self.tok.clone() };
        loaded.export(dir).with_context(|| format!("exporting {}", dir.display()))
    }

    /// The dev evaluation of `model` at `stage`, after `step` GRPO steps and `train_seconds` of
    /// training: its predictions in `dev/<stage>.predictions.parquet`, a point on the curve,
    /// and `best/` when it is the best so far.
    fn evaluate(&self, curve: &mut DevCurve, model: &CausalLm, stage: &str, step: u64, train_seconds: f64) -> Result<DevResult> {
        let dev = self.evaluator.dev(model, &self.run_dir.join(format!("dev/{stage}.predictions.parquet")))?;
        let n = self.evaluator.dev.len();
        self.log(&format!("dev {stage} ({} mode, {n} targets, {:.1} min of training): {}", dev.mode.name(), train_seconds / 60.0, dev.report.summary()))?;
        let point = Evaluation { stage: stage.to_string(), step, train_seconds, dev: dev.clone() };
        curve.record(point, || self.export(model, &self.run_dir.join("best")))?;
        Ok(dev)
    }
}

/// Runs (or resumes) the SELF-EMO pipeline of `config`: optional warm start, then K self-play
/// iterations of {rollouts of both roles, flywheel filter, SELF-GRPO updates, dev evaluation},
/// then the test evaluation of the best-dev model and the HF export.
pub fn train(config: &RunConfig, options: TrainOptions) -> Result<Outcome> {
    // 1. the run folder, the policy, the data
    let run_dir = config.run_dir();
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let resolved = toml::to_string_pretty(config)?;
    selfemo_datasets::atomic::write_atomically(&run_dir.join("config.toml"), |f| f.write_all(resolved.as_bytes()))?;
    let events = std::fs::OpenOptions::new().create(true).append(true).open(run_dir.join("events.log"))?;
    let device = parse_device(&config.device).map_err(anyhow::Error::msg)?.autodiff();
    let load = LoadOptions { max_layers: (config.model.max_layers > 0).then_some(config.model.max_layers), ..Default::default() };
    let LoadedModel { model, config: model_config, tokenizer } = LoadedModel::load(&ModelSource::parse(&config.model.source), load, &device).context("loading the policy")?;
    let corpus = selfemo_datasets::load(config.data.dataset, config.data.path.as_deref())?;
    let data = TrainData::new(config, &corpus).map_err(anyhow::Error::msg)?;
    let s = Session {
        config,
        corpus: &corpus,
        tok: &tokenizer,
        model_config: &model_config,
        run_dir: &run_dir,
        evaluator: Evaluator::new(config, &corpus, &tokenizer),
        events: RefCell::new(events),
        verbose: options.verbose,
    };

    // 2. what trains, the optimiser, and where a resumed run stands
    let mut model = apply_trainable(model, &config.model.trainable, config.seed);
    let mut optim = config.grpo.adamw.build();
    let mut state = State { step: 0, rows: Vec::new() };
    let checkpoint = if options.resume { checkpoint::latest(&run_dir) } else { None };
    if let Some(dir) = &checkpoint {
        (model, optim, state) = checkpoint::load(dir, model, optim).with_context(|| format!("resuming from {}", dir.display()))?;
        s.log(&format!("resumed from {} at step {}", dir.display(), state.step))?;
    } else if options.resume {
        s.log("--resume: no checkpoint yet, starting from step 0")?;
    }
    let resumed = checkpoint.is_some();
    let mut curve = DevCurve::open(&run_dir, resumed.then_some(state.step))?;
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
        run_dir.join("warm_start.json").is_file().then(|| read_json::<WarmStartRecord>(&run_dir.join("warm_start.json"))).transpose()?.map_or(0.0, |r| r.seconds)
    } else if config.warm_start.steps > 0 {
        let (m, seconds) = warm_start_phase(&s, model, &roles, &data.warm_start, &mut curve)?;
        model = m;
        seconds
    } else {
        0.0
    };

    // 4. self-play
    let (model, finished) = self_play(&s, model, &mut optim, &mut state, &mut curve, roles, &data, warm_seconds, options)?;
    if !finished {
        return Ok(Outcome { run_dir, dev_before, dev_after: None, curve: curve.entries, iterations: Vec::new(), test: None, rows: state.rows });
    }

    // 5. the best-dev model on test, plots, the export
    let sp = &config.selfplay;
    let iterations: Vec<IterationSummary> = if config.grpo.max_steps == 0 {
        Vec::new()
    } else {
        (1..=sp.iterations).map(|k| read_json(&run_dir.join(format!("iter-{k}/summary.json")))).collect::<Result<_>>()?
    };
    plot_steps(&run_dir, &state.rows)?;
    plot_progress(&run_dir, &curve.entries, &iterations)?;
    let dev_after = curve.entries.last().map(|e| e.dev.clone());
    let final_model = model.valid();
    let test = test_best(&s, &curve, &final_model, &device)?;
    s.export(&final_model, &run_dir.join("final"))?;
    Ok(Outcome { run_dir, dev_before, dev_after, curve: curve.entries, iterations, test, rows: state.rows })
}

/// What the warm start did (`warm_start.json`), so a resumed run knows its training time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct WarmStartRecord {
    steps: usize,
    examples: usize,
    distinct: usize,
    first_loss: Option<f64>,
    last_loss: Option<f64>,
    seconds: f64,
}

/// The SFT warm start on `targets` (in training order, repeats allowed), with dev evaluations
/// on its way (`warm_start-<step>`); returns the model and the seconds of SFT.
fn warm_start_phase(s: &Session, model: CausalLm, roles: &Roles, targets: &[Target], curve: &mut DevCurve) -> Result<(CausalLm, f64)> {
    let (c, ws, tok) = (s.config, &s.config.warm_start, s.tok);
    // Each distinct target's example once; the training order refers to them.
    let mut seen = std::collections::HashSet::new();
    let distinct: Vec<Target> = targets.iter().copied().filter(|t| seen.insert(*t)).collect();
    let by_target: std::collections::HashMap<Target, Example> = match ws.kind {
        WarmStartKind::Label => {
            let ps = prompts(s.corpus, &distinct, &c.prompt, c.data.context_window, c.data.max_prompt_tokens, tok);
            ps.iter().map(|p| (p.target, label_example(p, tok))).collect()
        }
        WarmStartKind::Rationale => rationale_examples(s, &model, roles, &distinct)?,
    };
    let examples: Vec<&Example> = targets.iter().filter_map(|t| by_target.get(t)).collect();
    let plan = SftPlan {
        steps: ws.steps,
        batch_size: ws.batch_size,
        learning_rate: ws.learning_rate,
        budget: (ws.minutes > 0.0).then(|| Duration::from_secs_f64(ws.minutes * 60.0)),
        every: ws.eval_every,
        prefix_sharing: c.grpo.prefix_sharing,
    };
    let mut evaluate = |step: usize, m: &CausalLm, seconds: f64| s.evaluate(curve, &m.valid(), &format!("warm_start-{step}"), 0, seconds).map(|_| ());
    let (model, outcome) = sft(model, &mut c.grpo.adamw.build(), &examples, tok.pad_id, &plan, &mut evaluate)?;
    let (first, last) = (outcome.losses.first().copied(), outcome.losses.last().copied());
    let seen_examples = (outcome.losses.len() * ws.batch_size).min(examples.len());
    let record = WarmStartRecord { steps: outcome.losses.len(), examples: seen_examples, distinct: by_target.len(), first_loss: first, last_loss: last, seconds: outcome.seconds };
    write_json(&s.run_dir.join("warm_start.json"), &record)?;
    s.log(&format!(
        "warm start: {} SFT steps on {} examples ({} distinct targets) in {:.1} min, loss {:.4} -> {:.4}",
        record.steps,
        record.examples,
        record.distinct,
        record.seconds / 60.0,
        first.unwrap_or(f64::NAN),
        last.unwrap_or(f64::NAN)
    ))?;
    Ok((model, outcome.seconds))
}

/// Ids of warm-start rationale items (apart from every rollout item's).
const RATIONALE_IDS: usize = 1 << 42;

/// The `rationale` warm start's examples by target: the policy explains each target's gold
/// label, and the rationales that pass every check (`warm_start_rationales.jsonl` lists them all).
fn rationale_examples(s: &Session, model: &CausalLm, roles: &Roles, targets: &[Target]) -> Result<std::collections::HashMap<Target, Example>> {
    let (c, tok) = (s.config, s.tok);
    let items: Vec<(Target, RecognitionItem)> = targets
        .iter()
        .enumerate()
        .filter_map(|(k, t)| RecognitionItem::from_target(s.corpus, *t, c.data.context_window, (RATIONALE_IDS + k) as u64).map(|i| (*t, i)))
        .collect();
    let (targets, items): (Vec<Target>, Vec<RecognitionItem>) = items.into_iter().unzip();
    let writer = model.valid();
    let policy = ModelPolicy { model: &writer, tok, sampling: c.grpo.sampling(), score_rows: c.eval.batch_size, vectors: None };
    let written = rationales(&policy, roles, &items, &c.warm_start.rationale_hint, c.seed);
    write_rationales(&s.run_dir.join("warm_start_rationales.jsonl"), &written)?;
    let count = |v: Verdict| written.iter().filter(|r| r.verdict() == v).count();
    s.log(&format!(
        "warm start: kept {} of {} self-written rationales; rejected {} naming an emotion, {} whose label-free re-prediction disagrees, {} empty",
        count(Verdict::Kept),
        written.len(),
        count(Verdict::NamesEmotion),
        count(Verdict::Disagrees),
        count(Verdict::Empty)
    ))?;
    let kept = targets.into_iter().zip(&written).filter(|(_, r)| r.kept());
    Ok(kept.map(|(t, r)| (t, (tok.encode(&render(tok, &roles.recognition_prompt(&policy, &r.item))), completion_ids(&r.completion(), tok)))).collect())
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
    let frozen = if needs_frozen { Some(checkpoint::reference(s.run_dir, &model, state.step)?) } else { None };
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
    };
    let draw = EmotionDraw::new(sp.target_emotion, s.corpus);
    // The flywheel as of the checkpoint: rows of steps after it are redone identically.
    let mut flywheel = Flywheel::new(read_flywheel(s.run_dir, state.step)?);
    let train_seconds = |rows: &[Row]| warm_seconds + rows.iter().map(step_seconds).sum::<f64>();
    let finish = |k: u32, m: &CausalLm, rows: &[Row], flywheel: &Flywheel, curve: &mut DevCurve| -> Result<()> {
        let dev = s.evaluate(curve, m, &format!("iteration-{k}"), rows.last().map_or(0, |r| r.step), train_seconds(rows))?;
        let summary = summarise(k, rows, flywheel, iteration_steps(g.max_steps, sp.iterations, k), dev);
        write_json(&s.run_dir.join(format!("iter-{k}/summary.json")), &summary)?;
        s.log(&format!(
            "iteration {k}: kept {} recognition + {} synthetic (of {} + {}), reward recogniser {:.3} responder {:.3}",
            summary.kept.kept_recognition, summary.kept.kept_synthetic, summary.kept.recognition_seen, summary.kept.synthetic_seen, summary.reward_recogniser, summary.reward_responder
        ))
    };
    // An iteration that ended at the checkpoint before its summary was written.
    if let Some(k) = (1..=sp.iterations as u32).find(|k| g.max_steps > 0 && iteration_steps(g.max_steps, sp.iterations, *k).1 == state.step)
        && !s.run_dir.join(format!("iter-{k}/summary.json")).is_file()
    {
        finish(k, &model.valid(), &state.rows, &flywheel, curve)?;
    }
    let last = options.stop_after.map_or(g.max_steps as u64, |x| x.min(g.max_steps as u64));
    let bar = if options.verbose { indicatif::ProgressBar::new(g.max_steps as u64) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  eta {eta}").expect("a valid template"));
    bar.set_position(state.step);
    let mut pool: (u32, Vec<RecognitionItem>) = (0, Vec::new());
    for t in state.step..last {
        let k = iteration_of(t, g.max_steps, sp.iterations);
        if pool.0 != k {
            pool = (k, flywheel.synthetic_items(k, labels, SYNTHETIC_IDS + (u64::from(k) << 24)));
        }
        let mut replay_seconds = 0.0;
        if k > 1 && sp.sft_epochs > 0.0 && t + 1 == iteration_steps(g.max_steps, sp.iterations, k).0 {
            (model, replay_seconds) = replay(s, model, &step.roles, &flywheel, k)?;
        }
        let items = step_items(t, g.prompts_per_step, &data.real, &pool.1, sp, s.corpus, c.data.context_window, c.seed, &draw);
        let (m, out) = step.run(model, optim, &mut flywheel, &items, k, t);
        model = m;
        let mut out = match out {
            Ok(o) => o,
            Err(e) => {
                s.log(&format!("step {}: {e}", t + 1))?;
                bail!("{e}; the last good checkpoint in {} is kept", s.run_dir.join("checkpoints").display());
            }
        };
        if replay_seconds > 0.0 {
            out.row.values.insert("timing/replay".into(), replay_seconds);
        }
        if out.resampled > 0 {
            writeln!(s.events.borrow_mut(), "step {}: resampled {} degenerate groups", t + 1, out.resampled)?;
        }
        let iter_dir = s.run_dir.join(format!("iter-{k}"));
        std::fs::create_dir_all(&iter_dir)?;
        store::write(&iter_dir.join("flywheel.parquet"), &flywheel.iteration_rows(k))?;
        report_step(s, &bar, &out, k)?;
        state.rows.push(out.row);
        state.step = t + 1;
        metrics_log::write(&s.run_dir.join("metrics.parquet"), &state.rows)?;
        if state.step % g.save_steps as u64 == 0 || state.step == g.max_steps as u64 || Some(state.step) == options.stop_after {
            checkpoint::save(s.run_dir, &model, optim, state)?;
        }
        if iteration_steps(g.max_steps, sp.iterations, k).1 == state.step {
            bar.suspend(|| finish(k, &model.valid(), &state.rows, &flywheel, curve))?;
        }
    }
    bar.finish_and_clear();
    let finished = state.step >= g.max_steps as u64;
    Ok((model, finished))
}

/// The progress bar, the console line and the events' sample lines of a step.
fn report_step(s: &Session, bar: &indicatif::ProgressBar, out: &crate::step::StepOutput, k: u32) -> Result<()> {
    let (v, step) = (&out.row.values, out.row.step);
    let get = |key: &str| v.get(key).copied().unwrap_or(f64::NAN);
    bar.set_message(format!("reward {:.3}  format {:.2}  kl {:.4}", get("reward"), get("rewards/format/mean"), get("kl")));
    bar.inc(1);
    if s.verbose {
        bar.suspend(|| {
            println!(
                "step {step:>4}/{} (iteration {k})  reward {:.3}  format {:.2}  recognition {:.3}  expression {:.3}  kept {}+{}  kl {:.4}  grad_norm {:.3}  {:.1}s",
                s.config.grpo.max_steps,
                get("reward"),
                get("rewards/format/mean"),
                get("rewards/recognition/mean"),
                get("rewards/expression/mean"),
                out.counts.kept_recognition,
                out.counts.kept_synthetic,
                get("kl"),
                get("grad_norm"),
                step_seconds(&out.row)
            )
        });
    }
    let mut events = s.events.borrow_mut();
    if let Some((gr, x)) = out.recognition.first().and_then(|gr| gr.samples.first().map(|x| (gr, x))) {
        writeln!(events, "step {step}: recogniser sample [gold {}]: {:?}", gr.item.gold, x.reply)?;
    }
    if let Some((gr, x)) = out.expression.first().and_then(|gr| gr.samples.first().map(|x| (gr, x))) {
        writeln!(events, "step {step}: responder sample [e* {}, heard {:?}]: {:?}", gr.item.emotion, x.rerecognised.map(|e| e.name()), x.turn)?;
    }
    Ok(())
}

/// The recognition rows iteration k−1 kept, trained on by SFT before iteration k's first step
/// (`iter-<k>/replay.jsonl` lists the examples in training order); returns the seconds taken.
fn replay(s: &Session, model: CausalLm, roles: &Roles, flywheel: &Flywheel, k: u32) -> Result<(CausalLm, f64)> {
    let (c, sp, tok) = (s.config, &s.config.selfplay, s.tok);
    let kept = flywheel.recognition_examples(k - 1, s.corpus.dataset.labels(), &c.prompt.reply_prefix, SYNTHETIC_IDS + (u64::from(k) << 24) + (1 << 23));
    let examples: Vec<Example> = {
        let m = model.valid();
        let policy = ModelPolicy { model: &m, tok, sampling: c.grpo.sampling(), score_rows: c.eval.batch_size, vectors: None };
        let prompt_ids = |item: &RecognitionItem| tok.encode(&render(tok, &roles.recognition_prompt(&policy, item)));
        kept.iter().map(|(item, completion)| (prompt_ids(item), completion_ids(completion, tok))).collect()
    };
    let steps = (sp.sft_epochs * examples.len() as f64 / sp.sft_batch_size as f64).ceil() as usize;
    let lines = (0..steps * sp.sft_batch_size).filter(|_| !kept.is_empty()).map(|i| {
        let (item, completion) = &kept[i % kept.len()];
        serde_json::json!({ "source": item.source, "label": item.gold.name(), "completion": completion })
    });
    write_json_lines(&s.run_dir.join(format!("iter-{k}/replay.jsonl")), lines)?;
    let plan = SftPlan { steps, batch_size: sp.sft_batch_size, learning_rate: sp.sft_learning_rate, budget: None, every: 0, prefix_sharing: c.grpo.prefix_sharing };
    let (model, outcome) = sft(model, &mut c.grpo.adamw.build(), &examples.iter().collect::<Vec<_>>(), tok.pad_id, &plan, &mut |_, _, _| Ok(()))?;
    let losses = &outcome.losses;
    writeln!(s.events.borrow_mut(), "iteration {k}: {} SFT steps on {} kept recognition rows of iteration {}, loss {:?}", losses.len(), examples.len(), k - 1, losses.first().zip(losses.last()))?;
    Ok((model, outcome.seconds))
}

/// The emotion vectors of steered responder sampling, checked against the policy.
fn steering_vectors(c: &RunConfig, model: &CausalLm) -> Result<Option<EmotionVectors>> {
    let Some(st) = &c.selfplay.steering else { return Ok(None) };
    let v = EmotionVectors::load(&st.vectors).with_context(|| format!("selfplay.steering.vectors: {}", st.vectors.display()))?;
    anyhow::ensure!(
        v.num_layers() == model.num_layers(),
        "selfplay.steering.vectors: {} holds vectors for {} layers (model {}), the policy has {}",
        st.vectors.display(),
        v.num_layers(),
        v.model,
        model.num_layers()
    );
    Ok(Some(v))
}

/// Evaluates the best-dev model on the test split in every configured mode (the final model
/// when the last evaluation is the best, else the export in `best/`) and writes `test.json`;
/// `None` when the dataset has no test targets.
fn test_best(s: &Session, curve: &DevCurve, final_model: &CausalLm, device: &burn::tensor::Device) -> Result<Option<TestResult>> {
    let best = curve.best();
    let is_final = best.is_none() || best == curve.entries.last();
    let loaded;
    let model = if is_final {
        final_model
    } else {
        let dir = s.run_dir.join("best");
        loaded = LoadedModel::load(&ModelSource::HfDir(dir), LoadOptions::default(), device).context("loading the best-dev model")?.model.valid();
        &loaded
    };
    let labels = s.corpus.dataset.labels();
    let adjustment = s.config.eval.logit_adjustment.then(|| LogitAdjustment::fit(&s.evaluator.predict(model, &s.evaluator.dev, EvalMode::Score), labels));
    let Some(reports) = s.evaluator.test(model, s.run_dir, adjustment.as_ref())? else { return Ok(None) };
    let stage = best.map_or("final".to_string(), |b| b.stage.clone());
    for (mode, r) in &reports {
        s.log(&format!("test ({stage}, best dev; {mode}): {}", r.summary()))?;
    }
    let result = TestResult { stage, reports, logit_adjustment: adjustment };
    write_json(&s.run_dir.join("test.json"), &result)?;
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
