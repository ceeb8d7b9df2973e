//! Data-parallel updates equal one process's: 2 ranks (threads, [`Threads`], exchanging bytes
//! through memory as MPI would) each run their share of the
//! micro-batches of a SELF-GRPO update (β > 0, ragged completions, prefix trees, μ = 2) or of an
//! SFT step, sum their gradients and step; the weights and stats equal the one-process update
//! with the same micro-batches. The MPI engine itself: selfemo-cli's `tests/mpi.rs`.

use burn::module::Module;
use burn::tensor::Device;
use selfemo_model::{Architecture, CausalLm, ModelConfig, SamplingConfig};
use selfemo_rewards::ScaleRewards;
use selfemo_trainer::collective::Threads;
use selfemo_trainer::grpo::{DegenerateGroups, Group, UpdateSettings, UpdateStats, rollout, update, update_on};
use selfemo_trainer::loss::{Clip, LossType};
use selfemo_trainer::optim::{AdamWSettings, LrDecay, LrSchedule};
use selfemo_trainer::warm_start::{Example, SftPlan, sft, sft_on};

fn flat(m: &CausalLm) -> Vec<f32> {
    let mut out = Vec::new();
    struct All<'a>(&'a mut Vec<f32>);
    impl burn::module::ModuleVisitor for All<'_> {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<burn::tensor::Tensor<D>>) {
            self.0.extend(p.val().try_to_vec_as::<f32>().unwrap());
        }
    }
    m.visit(&mut All(&mut out));
    out
}

fn gap(a: &CausalLm, b: &CausalLm) -> f32 {
    flat(a).iter().zip(flat(b)).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn settings(gradient_accumulation_steps: usize) -> UpdateSettings {
    UpdateSettings {
        clip: Clip { epsilon: 0.2, epsilon_high: 0.28, beta: 0.04 },
        loss_type: LossType::Dapo,
        scale_rewards: ScaleRewards::Group,
        advantage_epsilon: 1e-4,
        max_completion_length: 5,
        mask_truncated_completions: false,
        temperature: 1.0,
        max_grad_norm: 1.0,
        num_iterations: 2,
        gradient_accumulation_steps,
        importance_cap: 1.0,
        prefix_sharing: true,
        max_tree_tokens: 0,
        degenerate_groups: DegenerateGroups::Keep,
        pad: 0,
    }
}

/// Four groups of four ragged completions (an end-of-turn token stops some early), with
/// rewards that differ inside each group.
fn groups(model: &CausalLm) -> Vec<Group> {
    let prompts: Vec<(usize, Vec<u32>)> = (0..4).map(|i| (i, vec![1, 2 + i as u32, 3, 4 + (i as u32 % 3)])).collect();
    let sampling = SamplingConfig { temperature: 1.0, max_new_tokens: 5, ..Default::default() };
    let mut groups = rollout(&model.valid(), &prompts, 4, &sampling, 21, 0, &[9], 0);
    for (i, s) in groups.iter_mut().flat_map(|g| g.samples.iter_mut()).enumerate() {
        s.reward = ((i * 7) % 5) as f64 / 4.0;
    }
    assert!(groups.iter().flat_map(|g| &g.samples).any(|s| s.completion.len() < 5), "ragged completions");
    groups
}

#[test]
fn two_ranks_take_the_one_process_update_step() {
    let config = ModelConfig { vocab_size: 16, ..ModelConfig::tiny(Architecture::Qwen3) };
    let model = CausalLm::random(&config, 3, &Device::flex().autodiff());
    let reference = model.valid();
    let groups = groups(&model);
    let schedule = LrSchedule::constant(1e-2);
    let (one, one_stats) = update(model.clone(), Some(&reference), &mut AdamWSettings::default().build(), &groups, &settings(2), &schedule, 0);
    let one_stats = one_stats.unwrap();
    assert!(one_stats.grad_norm > 1e-3, "the update has signal: {one_stats:?}");
    let ranks: Vec<(CausalLm, UpdateStats)> = std::thread::scope(|scope| {
        let handles: Vec<_> = Threads::world(2, None)
            .into_iter()
            .map(|rank| {
                let (model, reference, groups) = (model.clone(), reference.clone(), &groups);
                scope.spawn(move || {
                    // One micro-batch per rank: gradient_accumulation_steps 1 rounds up to 2.
                    let (m, s) = update_on(&rank, model, Some(&reference), &mut AdamWSettings::default().build(), groups, &settings(1), &schedule, 0);
                    (m, s.unwrap())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (rank, (m, stats)) in ranks.iter().enumerate() {
        let g = gap(&one, m);
        assert!(g <= 1e-7, "rank {rank}: weights {g:e} from the one-process step");
        assert!((stats.loss - one_stats.loss).abs() <= 1e-12, "rank {rank}: loss {} vs {}", stats.loss, one_stats.loss);
        assert!((stats.grad_norm - one_stats.grad_norm).abs() <= 1e-9 * one_stats.grad_norm, "rank {rank}: grad norm");
        assert!((stats.loss_stats.kl - one_stats.loss_stats.kl).abs() <= 1e-12, "rank {rank}: KL");
    }
    assert_eq!(gap(&ranks[0].0, &ranks[1].0), 0.0, "every rank takes the same step");
    // And a plain one-pass update is the same step up to f32 summation order.
    let (single, _) = update(model.clone(), Some(&reference), &mut AdamWSettings::default().build(), &groups, &settings(1), &schedule, 0);
    assert!(gap(&single, &one) < 1e-4, "one pass and two micro-batches: {:e}", gap(&single, &one));
}

#[test]
fn two_ranks_take_the_one_process_sft_step() {
    let config = ModelConfig { vocab_size: 16, ..ModelConfig::tiny(Architecture::Llama) };
    let model = CausalLm::random(&config, 5, &Device::flex().autodiff());
    let examples: Vec<Example> = (0..6).map(|i| (vec![1, 2, 3 + i as u32 % 4], vec![8 + i as u32 % 5; 1 + i % 3])).collect();
    let refs: Vec<&Example> = examples.iter().collect();
    let plan = |micro_batches| SftPlan {
        steps: 3,
        batch_size: 5,
        learning_rate: 1e-2,
        decay: LrDecay::Constant,
        min_lr_ratio: 1.0,
        budget: None,
        every: 0,
        prefix_sharing: true,
        micro_batches,
    };
    let (one, one_out) = sft(model.clone(), &mut AdamWSettings::default().build(), &refs, 0, &plan(2), &mut |_, _, _| Ok(())).unwrap();
    let ranks: Vec<(CausalLm, Vec<f64>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = Threads::world(2, None)
            .into_iter()
            .map(|rank| {
                let (model, refs, plan) = (model.clone(), &refs, plan(1));
                scope.spawn(move || {
                    let (m, out) = sft_on(&rank, model, &mut AdamWSettings::default().build(), refs, 0, &plan, &mut |_, _, _| Ok(())).unwrap();
                    (m, out.losses)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (rank, (m, losses)) in ranks.iter().enumerate() {
        assert!(gap(&one, m) <= 1e-7, "rank {rank}: weights {:e}", gap(&one, m));
        assert_eq!(losses, &one_out.losses, "rank {rank}: losses");
    }
    assert!(one_out.losses[2] < one_out.losses[0], "it learns: {:?}", one_out.losses);
}
