//! A tiny random policy learns a verifiable task with SELF-GRPO: answer the label token named in
//! the prompt. Mean reward goes from chance to ≥ 0.9.

mod common;

use burn::module::Module;
use common::{train_device, update_settings as settings};
use selfemo_model::{Architecture, CausalLm, ModelConfig, SamplingConfig};
use selfemo_trainer::grpo::{DegenerateGroups, Group, UpdateSettings, rollout, update};
use selfemo_trainer::loss::{Clip, LossType};
use selfemo_trainer::optim::{AdamWSettings, LrDecay, LrSchedule};

const LABELS: [u32; 4] = [4, 5, 6, 7];

fn prompts(step: usize) -> Vec<(usize, Vec<u32>)> {
    (0..4).map(|i| (step * 4 + i, vec![1, 2, LABELS[(step + i) % 4], 3])).collect()
}

fn score(groups: &mut [Group]) -> f64 {
    let mut total = 0.0;
    let mut n = 0.0;
    for g in groups {
        let label = g.prompt[2];
        for s in &mut g.samples {
            s.reward = if s.completion.first() == Some(&label) { 1.0 } else { 0.0 };
            total += s.reward;
            n += 1.0;
        }
    }
    total / n
}

#[test]
fn tiny_policy_learns_to_answer_the_named_label() {
    let config = ModelConfig { vocab_size: 16, ..ModelConfig::tiny(Architecture::Llama) };
    let device = train_device();
    let mut model = CausalLm::random(&config, 11, &device);
    let reference = model.valid();
    let mut optim = AdamWSettings::default().build();
    let sampling = SamplingConfig { temperature: 1.0, max_new_tokens: 1, ..Default::default() };
    let settings = settings(Clip { epsilon: 0.2, epsilon_high: 0.28, beta: 0.01 }, LossType::Dapo, 1, 2);
    let eval = |m: &CausalLm, step: usize| {
        let mut groups = rollout(&m.valid(), &prompts(1000 + step), 16, &sampling, 99, step as u64, &[], 0);
        score(&mut groups)
    };
    let before = eval(&model, 0);
    let mut after = 0.0;
    for step in 0..120 {
        let mut groups = rollout(&model.valid(), &prompts(step), 8, &sampling, 7, step as u64, &[], 0);
        score(&mut groups);
        let (m, stats) = update(model, Some(&reference), &mut optim, &groups, &settings, &LrSchedule::constant(3e-3), 0);
        model = m;
        let stats = stats.expect("finite step");
        assert!(stats.loss.is_finite() && stats.grad_norm.is_finite());
        if step % 20 == 19 {
            after = eval(&model, step);
            if after >= 0.95 {
                break;
            }
        }
    }
    eprintln!("mean reward: before {before:.3}, after {after:.3}");
    assert!(before < 0.4, "chance is 1/16 per token: {before}");
    assert!(after >= 0.9, "after training: {after}");
}

#[test]
fn non_finite_steps_are_refused_and_leave_the_model_unchanged() {
    let config = ModelConfig { vocab_size: 16, ..ModelConfig::tiny(Architecture::Llama) };
    let device = train_device();
    let model = CausalLm::random(&config, 5, &device);
    let sampling = SamplingConfig { temperature: 1.0, max_new_tokens: 2, ..Default::default() };
    let settings = settings(Clip { epsilon: 0.2, epsilon_high: 0.2, beta: 0.0 }, LossType::Grpo, 2, 1);
    let mut groups = rollout(&model.valid(), &prompts(0)[..1], 4, &sampling, 1, 0, &[], 0);
    for (i, s) in groups[0].samples.iter_mut().enumerate() {
        s.reward = i as f64;
    }
    groups[0].samples[0].old_logprobs[0] = f64::NEG_INFINITY; // ratio = inf
    let before = model.model.layers[1].mlp.up_proj.weight.val().into_data();
    let mut optim = AdamWSettings::default().build();
    let (model, result) = update(model, None, &mut optim, &groups, &settings, &LrSchedule::constant(1e-2), 0);
    let err = result.unwrap_err();
    assert!(err.to_string().contains("non-finite loss"), "{err}");
    assert_eq!(model.model.layers[1].mlp.up_proj.weight.val().into_data(), before, "the step was not applied");

    groups[0].samples[1].reward = f64::NAN;
    let (_, result) = update(model, None, &mut optim, &groups, &settings, &LrSchedule::constant(1e-2), 0);
    assert!(result.unwrap_err().to_string().contains("reward"));
}

#[test]
fn gradient_accumulation_takes_the_same_step() {
    let config = ModelConfig { vocab_size: 16, ..ModelConfig::tiny(Architecture::Llama) };
    let device = train_device();
    let model = CausalLm::random(&config, 3, &device);
    let sampling = SamplingConfig { temperature: 1.0, max_new_tokens: 3, ..Default::default() };
    let mut groups = rollout(&model.valid(), &prompts(0), 4, &sampling, 5, 0, &[], 0);
    for (i, s) in groups.iter_mut().flat_map(|g| g.samples.iter_mut()).enumerate() {
        s.reward = (i % 3) as f64;
    }
    let step = |parts: usize| {
        let settings =
            UpdateSettings { gradient_accumulation_steps: parts, ..settings(Clip { epsilon: 0.2, epsilon_high: 0.28, beta: 0.0 }, LossType::Dapo, 3, 1) };
        let (m, stats) = update(model.clone(), None, &mut AdamWSettings::default().build(), &groups, &settings, &LrSchedule::constant(1e-2), 0);
        let w = m.model.layers[0].self_attn.q_proj.weight.val().into_data().try_to_vec::<f32>().unwrap();
        (w, stats.unwrap())
    };
    let (whole, a) = step(1);
    for parts in [3, 16] {
        let (split, b) = step(parts);
        let gap = whole.iter().zip(&split).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(gap < 1e-5, "{parts} micro-batches: max weight difference {gap} (lr 1e-2: float rounding only)");
        assert!((a.loss - b.loss).abs() < 1e-6 && (a.grad_norm - b.grad_norm).abs() < 1e-5, "{a:?} vs {b:?}");
        assert!((a.loss_stats.clip_high - b.loss_stats.clip_high).abs() < 1e-9);
    }
}

#[test]
fn sft_loss_is_completion_cross_entropy_and_teaches_the_completion() {
    use burn::tensor::{Int, Tensor, TensorData, activation};
    use selfemo_trainer::loss::sft_loss;
    let config = ModelConfig { vocab_size: 16, ..ModelConfig::tiny(Architecture::Qwen3) };
    let device = train_device();
    let mut model = CausalLm::random(&config, 9, &device);
    let prompts = vec![vec![1, 2, 4, 3], vec![1, 5, 3]];
    let completions = vec![vec![8, 9, 0], vec![10, 0]];
    // reference: the mean −log softmax over the completion positions of full, unpadded rows
    let mut nll = Vec::new();
    for (p, c) in prompts.iter().zip(&completions) {
        let ids: Vec<i64> = p.iter().chain(c).map(|t| *t as i64).collect();
        let n = ids.len();
        let logits = model.valid().forward_logits(Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), &train_device().without_autodiff()));
        let lp = activation::log_softmax(logits.reshape([n, 16]), 1).into_data().try_to_vec::<f32>().unwrap();
        nll.extend(c.iter().enumerate().map(|(j, t)| -(lp[(p.len() + j - 1) * 16 + *t as usize] as f64)));
    }
    let reference = nll.iter().sum::<f64>() / nll.len() as f64;
    let tokens = completions.iter().map(Vec::len).sum();
    let loss = |m: &CausalLm| sft_loss(selfemo_model::completion_logprobs(m, &prompts, &completions, 0, 1.0), tokens);
    let first = loss(&model).into_scalar::<f32>() as f64;
    assert!((first - reference).abs() < 1e-5, "sft loss {first} vs reference {reference}");
    let mut optim = AdamWSettings::default().build();
    for _ in 0..60 {
        let grads = burn::optim::GradientsParams::from_grads(loss(&model).backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    let last = loss(&model).into_scalar::<f32>() as f64;
    assert!(first > 2.0 && last < 0.1, "cross-entropy {first} -> {last}");
}

#[test]
fn lora_trains_only_its_adapters_and_exports_merged_weights() {
    use burn::tensor::{Int, Tensor, TensorData};
    use selfemo_trainer::config::Trainable;
    use selfemo_trainer::trainable::apply_trainable;
    let config = ModelConfig { vocab_size: 16, ..ModelConfig::tiny(Architecture::Qwen3) };
    let device = train_device();
    let base = CausalLm::random(&config, 13, &device);
    let trainable = Trainable::Lora { rank: 4, alpha: 8.0, targets: vec!["q_proj".into(), "v_proj".into(), "down_proj".into()] };
    let mut model = apply_trainable(base.clone(), &trainable, 1);
    let ids = || Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 2, 5, 3, 7], [1, 5]), &train_device().without_autodiff());
    let logits = |m: &CausalLm| m.valid().forward_logits(ids()).into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(logits(&model), logits(&base), "B = 0: adapters start as the identity");

    let mut optim = AdamWSettings::default().build();
    let sampling = SamplingConfig { temperature: 1.0, max_new_tokens: 1, ..Default::default() };
    let settings = settings(Clip { epsilon: 0.2, epsilon_high: 0.28, beta: 0.0 }, LossType::Dapo, 1, 1);
    for step in 0..5 {
        let mut groups = rollout(&model.valid(), &prompts(step), 8, &sampling, 7, step as u64, &[], 0);
        score(&mut groups);
        let (m, stats) = update(model, None, &mut optim, &groups, &settings, &LrSchedule::constant(1e-2), 0);
        model = m;
        stats.unwrap();
    }
    let weight = |m: &CausalLm, f: fn(&CausalLm) -> Tensor<2>| f(m).into_data().try_to_vec::<f32>().unwrap();
    // Targeted projections moved (through their adapters); the others did not.
    assert_ne!(weight(&model, |m| m.model.layers[0].self_attn.q_proj.weight.val()), weight(&base, |m| m.model.layers[0].self_attn.q_proj.weight.val()));
    assert_eq!(weight(&model, |m| m.model.layers[0].self_attn.k_proj.weight.val()), weight(&base, |m| m.model.layers[0].self_attn.k_proj.weight.val()));
    assert_eq!(weight(&model, |m| m.model.embed_tokens.weight.val()), weight(&base, |m| m.model.embed_tokens.weight.val()));

    // A checkpoint keeps the adapters: restored into a freshly adapted base, same logits.
    let run = tempfile::tempdir().unwrap();
    let state = selfemo_trainer::checkpoint::State { step: 5, rows: Vec::new() };
    let saved = selfemo_trainer::checkpoint::save(run.path(), &model, &optim, &state).unwrap();
    let fresh = apply_trainable(base.clone(), &trainable, 2);
    let (restored, _, _) = selfemo_trainer::checkpoint::load(&saved, fresh, AdamWSettings::default().build()).unwrap();
    assert_eq!(logits(&restored), logits(&model), "adapters restored from the checkpoint");

    // warm_start.merge_lora: merged into the weights with fresh adapters, the same function, with
    // every B factor back at zero; a checkpoint of it restores into a freshly adapted base (what
    // --resume builds) with the same logits, so the merged weights travel with it.
    let restarted = selfemo_trainer::trainable::restart_adapters(model.clone(), &trainable, 3);
    let gap = logits(&restarted).iter().zip(logits(&model)).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(gap < 1e-5, "merging changed the logits by {gap}");
    let b_factors = |m: &CausalLm| -> Vec<(String, f32)> {
        use burn::store::ModuleSnapshot;
        m.clone()
            .collect(None, None, true)
            .into_iter()
            .map(|t| t.into_parts().unwrap())
            .filter(|(name, ..)| name.contains("lora") && name.ends_with(".b"))
            .map(|(name, _, _, _, bytes)| (name, bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]).abs()).fold(0.0, f32::max)))
            .collect()
    };
    let (trained, fresh_b) = (b_factors(&model), b_factors(&restarted));
    assert_eq!(trained.len(), 3 * config.num_hidden_layers, "one B per adapted projection: {trained:?}");
    assert!(trained.iter().all(|(_, m)| *m > 0.0), "training moved every B: {trained:?}");
    assert_eq!(fresh_b.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(), trained.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>());
    assert!(fresh_b.iter().all(|(_, m)| *m == 0.0), "fresh adapters start at B = 0: {fresh_b:?}");
    let run2 = tempfile::tempdir().unwrap();
    let saved = selfemo_trainer::checkpoint::save(run2.path(), &restarted, &AdamWSettings::default().build(), &state).unwrap();
    let (resumed, _, _) = selfemo_trainer::checkpoint::load(&saved, apply_trainable(base.clone(), &trainable, 2), AdamWSettings::default().build()).unwrap();
    assert_eq!(logits(&resumed), logits(&restarted), "the merged weights and fresh adapters restored from the checkpoint");

    let dir = tempfile::tempdir().unwrap();
    selfemo_model::export::hf::write_model(&model.valid(), &config, dir.path(), Default::default()).unwrap();
    let (back, _) = selfemo_model::weights::load_hf(dir.path(), burn::tensor::DType::F32, None, &train_device().without_autodiff()).unwrap();
    let (a, b) = (logits(&model), back.forward_logits(ids()).into_data().try_to_vec::<f32>().unwrap());
    let gap = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(gap < 1e-5, "exported (merged) model differs from the adapted one by {gap}");
    assert_ne!(a, logits(&base), "training changed the model");
}

#[test]
fn dropped_degenerate_groups_leave_the_loss_as_if_absent() {
    let config = ModelConfig { vocab_size: 16, ..ModelConfig::tiny(Architecture::Llama) };
    let device = train_device();
    let model = CausalLm::random(&config, 4, &device);
    let sampling = SamplingConfig { temperature: 1.0, max_new_tokens: 3, ..Default::default() };
    let mut groups = rollout(&model.valid(), &prompts(0), 4, &sampling, 2, 0, &[], 0);
    for (i, g) in groups.iter_mut().enumerate() {
        for (j, s) in g.samples.iter_mut().enumerate() {
            s.reward = if i % 2 == 0 { 1.0 } else { j as f64 }; // groups 0 and 2 are degenerate
        }
    }
    let informative: Vec<Group> = groups.iter().enumerate().filter(|(i, _)| i % 2 == 1).map(|(_, g)| g.clone()).collect();
    let base = settings(Clip { epsilon: 0.2, epsilon_high: 0.2, beta: 0.0 }, LossType::Dapo, 3, 1);
    let run = |groups: &[Group], policy: DegenerateGroups| {
        let settings = UpdateSettings { degenerate_groups: policy, ..base.clone() };
        let (_, stats) = update(model.clone(), None, &mut AdamWSettings::default().build(), groups, &settings, &LrSchedule::constant(1e-2), 0);
        stats.unwrap()
    };
    let (dropped, absent, kept) = (run(&groups, DegenerateGroups::Drop), run(&informative, DegenerateGroups::Keep), run(&groups, DegenerateGroups::Keep));
    assert_eq!(dropped.loss, absent.loss);
    assert_eq!(dropped.grad_norm, absent.grad_norm);
    assert!(kept.grad_norm < dropped.grad_norm, "kept zero-advantage tokens dilute the token mean: {} vs {}", kept.grad_norm, dropped.grad_norm);
    assert_eq!(dropped.frac_reward_zero_std, 0.5, "still reported");
}

#[test]
fn group_consistency_breaks_ties_in_degenerate_groups() {
    // The state the pipeline reaches with rewards.weights.consistency = 0 (the only setting in
    // which a tie-break can act: with w_g > 0 unequal C_i make unequal totals). Gold sadness,
    // every answer wrong: equal totals, but two samples agree with the group's majority (joy).
    use selfemo_rewards::{RewardConfig, RewardWeights, score_recognition_group};
    let meld = selfemo_datasets::Dataset::Meld.labels();
    let rewards = RewardConfig { weights: RewardWeights { consistency: 0.0, ..Default::default() }, ..Default::default() };
    let answers = ["joy", "joy", "anger", "fear"].map(|a| format!("<think>x</think><answer>{a}</answer>"));
    let scored = score_recognition_group(&answers.each_ref().map(String::as_str), &[meld.parse("sadness").unwrap()], meld, &rewards, None);
    assert!(scored.iter().all(|(_, b)| b.total == scored[0].1.total), "a degenerate group");
    let config = ModelConfig { vocab_size: 16, ..ModelConfig::tiny(Architecture::Llama) };
    let device = train_device();
    let model = CausalLm::random(&config, 6, &device);
    let sampling = SamplingConfig { temperature: 1.0, max_new_tokens: 2, ..Default::default() };
    let mut groups = rollout(&model.valid(), &prompts(0), 4, &sampling, 8, 0, &[], 0);
    for g in &mut groups {
        for (s, (_, b)) in g.samples.iter_mut().zip(&scored) {
            (s.reward, s.consistency) = (b.total, b.consistency.unwrap());
        }
    }
    let base = settings(Clip { epsilon: 0.2, epsilon_high: 0.2, beta: 0.0 }, LossType::Dapo, 2, 1);
    let run = |policy: DegenerateGroups| {
        let settings = UpdateSettings { degenerate_groups: policy, ..base.clone() };
        update(model.clone(), None, &mut AdamWSettings::default().build(), &groups, &settings, &LrSchedule::constant(1e-2), 0).1.unwrap()
    };
    let (kept, tie) = (run(DegenerateGroups::Keep), run(DegenerateGroups::Consistency));
    assert_eq!(kept.grad_norm, 0.0, "equal rewards carry no signal");
    assert!(tie.grad_norm > 0.0, "the consistency values do");
    assert_eq!(tie.frac_reward_zero_std, 1.0, "the reward groups are still reported as degenerate");
}

#[test]
fn clip_statistics_cover_every_one_of_the_mu_steps() {
    // At the first of μ steps π_θ = π_old, so nothing is clipped; a large step moves the ratio
    // past 1 ± ε for the second. The logged clip ratios are the mean over all μ steps, as TRL's.
    let config = ModelConfig { vocab_size: 16, ..ModelConfig::tiny(Architecture::Llama) };
    let device = train_device();
    let model = CausalLm::random(&config, 12, &device);
    let sampling = SamplingConfig { temperature: 1.0, max_new_tokens: 3, ..Default::default() };
    let mut groups = rollout(&model.valid(), &prompts(0), 4, &sampling, 5, 0, &[], 0);
    score(&mut groups);
    for (i, s) in groups.iter_mut().flat_map(|g| g.samples.iter_mut()).enumerate() {
        s.reward = (i % 3) as f64;
    }
    let clip = Clip { epsilon: 0.2, epsilon_high: 0.2, beta: 0.0 };
    let run = |mu: usize| {
        let settings = UpdateSettings { max_grad_norm: 0.0, ..settings(clip, LossType::Dapo, 3, mu) };
        update(model.clone(), None, &mut AdamWSettings::default().build(), &groups, &settings, &LrSchedule::constant(5e-2), 0).1.unwrap()
    };
    let (one, two) = (run(1), run(2));
    assert_eq!((one.loss_stats.clip_low, one.loss_stats.clip_high), (0.0, 0.0), "a single step is on-policy");
    let clipped = two.loss_stats.clip_low + two.loss_stats.clip_high;
    assert!(clipped > 0.0, "the second of two steps clips some tokens: {:?}", two.loss_stats);
}

#[test]
fn each_of_the_mu_steps_takes_its_own_scheduled_rate() {
    let config = ModelConfig { vocab_size: 16, ..ModelConfig::tiny(Architecture::Llama) };
    let model = CausalLm::random(&config, 2, &train_device());
    let sampling = SamplingConfig { temperature: 1.0, max_new_tokens: 2, ..Default::default() };
    let mut groups = rollout(&model.valid(), &prompts(0), 4, &sampling, 3, 0, &[], 0);
    score(&mut groups);
    for (i, s) in groups.iter_mut().flat_map(|g| g.samples.iter_mut()).enumerate() {
        s.reward = (i % 2) as f64;
    }
    // 3 rollout steps of μ = 2: optimiser steps 0..6, cosine from 1e-2 to 1e-3; rollout step 1
    // runs optimiser steps 2 and 3 and reports the rate of step 2.
    let schedule = LrSchedule { base: 1e-2, warmup: 0, total: 6, min_ratio: 0.1 };
    let settings = settings(Clip { epsilon: 0.2, epsilon_high: 0.2, beta: 0.0 }, LossType::Dapo, 2, 2);
    let (_, stats) = update(model.clone(), None, &mut AdamWSettings::default().build(), &groups, &settings, &schedule, 2);
    // 0.1 + 0.9 · (1 + cos(2π/5)) / 2 = 0.6890576474687264 of the peak
    assert!((stats.unwrap().learning_rate - 6.890_576_474_687_264e-3).abs() < 1e-15);
    assert!((schedule.at(5) - 1e-3).abs() < 1e-15, "the last optimiser step runs at the floor");
}

#[test]
fn an_sft_pass_reports_every_n_steps_and_stops_when_its_budget_is_spent() {
    use selfemo_trainer::warm_start::{Example, SftPlan, sft};
    let config = ModelConfig { vocab_size: 16, ..ModelConfig::tiny(Architecture::Qwen3) };
    let model = CausalLm::random(&config, 9, &train_device());
    let examples: Vec<Example> = vec![(vec![1, 2, 4, 3], vec![8, 9]), (vec![1, 5, 3], vec![10])];
    let refs: Vec<&Example> = examples.iter().collect();
    let plan = SftPlan {
        steps: 7,
        batch_size: 2,
        learning_rate: 1e-2,
        decay: LrDecay::Constant,
        min_lr_ratio: 1.0,
        budget: None,
        every: 3,
        prefix_sharing: true,
        micro_batches: 1,
    };
    let mut seen = Vec::new();
    let (_, out) = sft(model.clone(), &mut AdamWSettings::default().build(), &refs, 0, &plan, &mut |step, _, seconds| {
        seen.push((step, seconds));
        Ok(())
    })
    .unwrap();
    assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), [3, 6, 7], "every 3 steps and the last");
    assert!(seen.windows(2).all(|w| w[0].1 <= w[1].1) && (seen[2].1 - out.seconds).abs() < 1e-12);
    assert_eq!(out.losses.len(), 7);
    assert!(out.losses[6] < out.losses[0], "it learns: {:?}", out.losses);
    // A budget already spent after the first step: one step, reported as the last.
    let tight = SftPlan { budget: Some(std::time::Duration::from_nanos(1)), ..plan };
    let mut calls = Vec::new();
    let (_, out) = sft(model, &mut AdamWSettings::default().build(), &refs, 0, &tight, &mut |step, _, _| {
        calls.push(step);
        Ok(())
    })
    .unwrap();
    assert_eq!((out.losses.len(), calls), (1, vec![1]));
}

#[test]
fn a_cosine_sft_pass_decays_to_its_floor_by_steps_or_by_time() {
    use selfemo_trainer::warm_start::{Example, SftPlan, sft};
    let config = ModelConfig { vocab_size: 16, ..ModelConfig::tiny(Architecture::Qwen3) };
    let model = CausalLm::random(&config, 9, &train_device());
    let examples: Vec<Example> = vec![(vec![1, 2, 4, 3], vec![8, 9]), (vec![1, 5, 3], vec![10])];
    let refs: Vec<&Example> = examples.iter().collect();
    let probe = |m: &CausalLm| selfemo_model::completion_logprobs(m, &[vec![1, 2, 4, 3]], &[vec![8, 9]], 0, 1.0).into_data().try_to_vec::<f32>().unwrap();
    // Floor 0: the last of 3 steps runs at rate 0 and leaves the weights as the second left them;
    // at a constant rate the last step moves them.
    for (decay, last_step_moves) in [(LrDecay::Cosine, false), (LrDecay::Constant, true)] {
        let plan =
            SftPlan { steps: 3, batch_size: 2, learning_rate: 1e-2, decay, min_lr_ratio: 0.0, budget: None, every: 1, prefix_sharing: true, micro_batches: 1 };
        let mut after = Vec::new();
        sft(model.clone(), &mut AdamWSettings::default().build(), &refs, 0, &plan, &mut |_, m, _| {
            after.push(probe(m));
            Ok(())
        })
        .unwrap();
        assert_eq!(after[1] != after[2], last_step_moves, "{decay:?}");
        assert_ne!(after[0], after[1], "{decay:?}: the second step runs at half the peak");
    }
    // A pass bounded by minutes decays by the time spent: half-way through 60 s, cosine is at
    // 0.1 + 0.9 · (1 + cos(π/2)) / 2 = 0.55 of the peak, whatever the step.
    let by_time = SftPlan {
        steps: 100_000,
        batch_size: 8,
        learning_rate: 1e-3,
        decay: LrDecay::Cosine,
        min_lr_ratio: 0.1,
        budget: Some(std::time::Duration::from_secs(60)),
        every: 0,
        prefix_sharing: true,
        micro_batches: 1,
    };
    assert!((by_time.rate(10, 30.0) - 5.5e-4).abs() < 1e-15);
    assert!((by_time.rate(10, 90.0) - 1e-4).abs() < 1e-15, "past the budget: the floor");
}

/// Every trainable parameter's gradient, flattened in visiting order.
fn gradients(model: &CausalLm, grads: &burn::optim::GradientsParams) -> Vec<Vec<f32>> {
    struct Collect<'a>(&'a burn::optim::GradientsParams, Vec<Vec<f32>>);
    impl burn::module::ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<burn::tensor::Tensor<D>>) {
            if let Some(g) = self.0.get::<D>(param.id) {
                self.1.push(g.into_data().try_to_vec().unwrap());
            }
        }
    }
    let mut c = Collect(grads, Vec::new());
    model.visit(&mut c);
    c.1
}

#[test]
fn the_prefix_tree_layout_gives_the_padded_loss_and_every_gradient() {
    use burn::optim::GradientsParams;
    use selfemo_trainer::config::Trainable;
    use selfemo_trainer::loss::{TokenBatch, grpo_loss};
    use selfemo_trainer::trainable::apply_trainable;
    for arch in [Architecture::Llama, Architecture::Qwen3] {
        // The last case's prompts are 150 tokens: its tree spans several attention blocks
        // (`selfemo_model::tree_attention`), the others fit one dense call.
        for (g, beta, lora, long) in [(1, 0.0, false, 0), (4, 0.04, false, 0), (4, 0.04, true, 0), (4, 0.04, true, 150)] {
            let config = ModelConfig { vocab_size: 16, ..ModelConfig::tiny(arch) };
            let base = CausalLm::random(&config, 21, &train_device());
            let model = if lora {
                apply_trainable(base, &Trainable::Lora { rank: 2, alpha: 4.0, targets: vec!["q_proj".into(), "down_proj".into()] }, 3)
            } else {
                base
            };
            let reference = CausalLm::random(&config, 22, &train_device().without_autodiff());
            // Groups of G ragged completions of prompts that share a header, one of them twice.
            let body = |seed: u32| (0..long).map(move |k| (seed * 7 + k * k) % 16);
            let prompts_g: [Vec<u32>; 3] = [
                [1, 2, 3, 4, 5].into_iter().chain(body(1)).collect(),
                [1, 2, 3, 9].into_iter().chain(body(2)).collect(),
                [1, 2, 3, 4, 5].into_iter().chain(body(1)).collect(),
            ];
            let (mut prompts, mut completions) = (Vec::new(), Vec::new());
            for (i, p) in prompts_g.iter().enumerate() {
                for j in 0..g {
                    prompts.push(p.clone());
                    completions.push((0..1 + (i + j) % 3).map(|k| (6 + i + j + k) as u32 % 16).collect::<Vec<u32>>());
                }
            }
            let lengths: Vec<usize> = completions.iter().map(Vec::len).collect();
            let n: usize = lengths.iter().sum();
            let layout = |sharing: bool| {
                let s = UpdateSettings { prefix_sharing: sharing, ..settings(Clip { epsilon: 0.2, epsilon_high: 0.28, beta }, LossType::Dapo, 3, 1) };
                let reference_lp = s.logprobs(&reference, &prompts, &completions).into_data().try_to_vec::<f32>().unwrap();
                let batch = TokenBatch {
                    old_logprobs: reference_lp.iter().map(|x| x + 0.1).collect(),
                    ref_logprobs: (beta > 0.0).then(|| reference_lp.clone()),
                    advantages: (0..n).map(|i| (i % 5) as f32 - 2.0).collect(),
                    importance: vec![1.0; n],
                    weights: LossType::Dapo.token_weights(&lengths, &vec![true; lengths.len()], 3).into_iter().map(|w| w as f32).collect(),
                };
                let (loss, stats) = grpo_loss(s.logprobs(&model, &prompts, &completions), &batch, s.clip);
                (stats.loss, gradients(&model, &GradientsParams::from_grads(loss.backward(), &model)))
            };
            let ((padded_loss, padded), (tree_loss, tree)) = (layout(false), layout(true));
            assert!((padded_loss - tree_loss).abs() < 1e-5, "{arch:?} G={g} long={long}: loss {padded_loss} vs {tree_loss}");
            assert_eq!(padded.len(), tree.len());
            assert!(!padded.is_empty());
            for (a, b) in padded.iter().zip(&tree) {
                let gap = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
                let scale = a.iter().map(|x| x.abs()).fold(0.0f32, f32::max).max(1e-3);
                assert!(gap / scale < 1e-4, "{arch:?} G={g} beta={beta} lora={lora} long={long}: gradient gap {gap} (scale {scale})");
            }
        }
    }
}

#[test]
fn passes_cut_by_the_token_budget_take_the_same_step_as_one_pass() {
    use selfemo_trainer::grpo::micro_batches;
    // Prompts of 4, 4 (the same: counted once), 3 tokens; completions of 2, 1, 2.
    let rows = vec![vec![1, 2, 3, 4], vec![1, 2, 3, 4], vec![5, 6, 7]];
    assert_eq!(micro_batches(&rows, &[2, 1, 2], 1, 0), [0, 3], "no limit: one pass");
    assert_eq!(micro_batches(&rows, &[2, 1, 2], 1, 7), [0, 2, 3], "4 + 2 + 1 = 7 fit, the third needs 5 more");
    assert_eq!(micro_batches(&rows, &[2, 1, 2], 1, 3), [0, 1, 2, 3], "every sample over the budget is its own pass");
    assert_eq!(micro_batches(&rows, &[2, 1, 2], 2, 0), [0, 1, 3], "even parts first");
    let config = ModelConfig { vocab_size: 16, ..ModelConfig::tiny(Architecture::Qwen3) };
    let model = CausalLm::random(&config, 8, &train_device());
    let sampling = SamplingConfig { temperature: 1.0, max_new_tokens: 3, ..Default::default() };
    let mut groups = rollout(&model.valid(), &prompts(0), 4, &sampling, 4, 0, &[], 0);
    for (i, s) in groups.iter_mut().flat_map(|g| g.samples.iter_mut()).enumerate() {
        s.reward = (i % 3) as f64;
    }
    let step = |budget: usize| {
        let s = UpdateSettings {
            prefix_sharing: true,
            max_tree_tokens: budget,
            ..settings(Clip { epsilon: 0.2, epsilon_high: 0.28, beta: 0.0 }, LossType::Dapo, 3, 1)
        };
        let (m, stats) = update(model.clone(), None, &mut AdamWSettings::default().build(), &groups, &s, &LrSchedule::constant(1e-2), 0);
        (m.model.layers[1].mlp.gate_proj.weight.val().into_data().try_to_vec::<f32>().unwrap(), stats.unwrap())
    };
    let ((one, a), (cut, b)) = (step(0), step(6));
    let gap = one.iter().zip(&cut).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(gap < 5e-5, "max weight difference {gap} (lr 1e-2; Adam's first step is lr·g/|g|, so rounding in near-zero gradients shows)");
    assert!((a.loss - b.loss).abs() < 1e-6 && (a.grad_norm - b.grad_norm).abs() < 1e-5, "{a:?} vs {b:?}");
}
