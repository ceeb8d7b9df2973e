//! Equivalences on a tiny random model: cached = recomputed, batched = one by one,
//! sampling-time log-probs = training-time log-probs, and gradients reach every parameter.

mod common;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Int, Tensor, TensorData};
use common::test_device;
use selfemo_model::generate::{left_pad, prefill_padded, prefill_shared};
use selfemo_model::model::DECODE_SLACK;
use selfemo_model::{Architecture, CausalLm, KvCache, ModelConfig, SamplingConfig, completion_logprobs, generate};

fn to_vec(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_to_vec().unwrap()
}

fn prompts() -> Vec<Vec<u32>> {
    vec![vec![3, 17, 42, 5, 9, 11, 60], vec![7, 8], vec![90, 1, 2, 3, 4]]
}

/// Decoding runs past two cache growths (the cache holds `DECODE_SLACK` spare key slots), and
/// every step's logits equal recomputing the whole sequence.
#[test]
fn cached_decoding_equals_full_recomputation_on_a_ragged_batch() {
    let steps = 2 * DECODE_SLACK + 3;
    for arch in [Architecture::Llama, Architecture::Qwen3] {
        let model = CausalLm::random(&ModelConfig::tiny(arch), 1, &test_device());
        let rows = prompts();
        let continuation: Vec<Vec<u32>> = (0..3).map(|r| (0..steps).map(|i| ((12 + 7 * i + r) % 96) as u32).collect()).collect();
        let (ids, valid) = left_pad(&rows, 0, &test_device());
        let mut cache = KvCache::new(model.num_layers(), rows.len());
        model.hidden(ids, &valid, Some(&mut cache), None);
        let mut capacities = vec![cache.capacity];
        for step in 0..steps {
            let next: Vec<i64> = continuation.iter().map(|c| c[step] as i64).collect();
            let x = Tensor::<2, Int>::from_data(TensorData::new(next, [3, 1]), &test_device());
            let h = model.hidden(x, &vec![vec![true]; 3], Some(&mut cache), None);
            assert!(cache.capacity >= cache.len());
            capacities.push(cache.capacity);
            let cached = to_vec(model.logits(h.reshape([3, 32])));
            for (r, row) in rows.iter().enumerate() {
                let full: Vec<u32> = row.iter().chain(&continuation[r][..=step]).copied().collect();
                let t = full.len();
                let x = Tensor::<2, Int>::from_data(TensorData::new(full.iter().map(|v| *v as i64).collect(), [1, t]), &test_device());
                let all = model.forward_logits(x);
                let last: Vec<f32> = all.slice([0..1, t - 1..t, 0..96]).into_data().try_to_vec().unwrap();
                let got = &cached[r * 96..(r + 1) * 96];
                let diff = last.iter().zip(got).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
                assert!(diff < 1e-4, "{arch:?} row {r} step {step}: {diff}");
            }
        }
        capacities.dedup();
        assert_eq!(capacities.len(), 4, "the prompt's exact fit, then three growths: {capacities:?}");
    }
}

#[test]
fn batched_greedy_equals_one_by_one() {
    let model = CausalLm::random(&ModelConfig::tiny(Architecture::Qwen3), 2, &test_device());
    let cfg = SamplingConfig::greedy(6);
    let batched = generate(&model, &prompts(), &cfg, &[0, 0, 0], &[], 0, None);
    for (r, p) in prompts().iter().enumerate() {
        let alone = generate(&model, std::slice::from_ref(p), &cfg, &[0], &[], 0, None);
        assert_eq!(batched[r].tokens, alone[0].tokens, "row {r}");
        for (a, b) in batched[r].logprobs.iter().zip(&alone[0].logprobs) {
            assert!((a - b).abs() < 1e-4);
        }
    }
}

/// Prompts that share a prefix, branch, repeat and differ in length: one dialogue's targets,
/// G copies of one prompt, and a prompt that shares nothing after the common start.
fn overlapping_prompts() -> Vec<Vec<u32>> {
    let head = [3, 17, 42, 5];
    let with = |tail: &[u32]| head.iter().chain(tail).copied().collect::<Vec<u32>>();
    vec![with(&[9, 11, 60]), with(&[9, 11, 60, 61, 62, 63]), with(&[9, 12]), with(&[9, 11, 60]), with(&[70]), with(&[70, 71, 9, 11])]
}

#[test]
fn shared_prefill_equals_padded_prefill_and_decodes_the_same() {
    for arch in [Architecture::Llama, Architecture::Qwen3] {
        let model = CausalLm::random(&ModelConfig::tiny(arch), 4, &test_device());
        for rows in [overlapping_prompts(), prompts(), vec![vec![5, 6, 7]; 3]] {
            let (mut shared, a) = prefill_shared(&model, &rows);
            let (mut padded, b) = prefill_padded(&model, &rows, 0, None);
            let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
            assert!(diff < 1e-4, "{arch:?} prefill logits differ by {diff}");
            assert_eq!((&shared.valid, &shared.next_position), (&padded.valid, &padded.next_position));
            // the caches hold the same keys: two decoding steps agree
            let n = rows.len();
            let step = |cache: &mut KvCache, token: i64| {
                let x = Tensor::<2, Int>::from_data(TensorData::new(vec![token; n], [n, 1]), &test_device());
                to_vec(model.logits(model.hidden(x, &vec![vec![true]; n], Some(cache), None).reshape([n, 32])))
            };
            for token in [12, 13] {
                let (a, b) = (step(&mut shared, token), step(&mut padded, token));
                let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
                assert!(diff < 1e-4, "{arch:?} decode logits differ by {diff}");
            }
        }
    }
}

#[test]
fn greedy_generation_of_overlapping_prompts_equals_one_by_one() {
    let model = CausalLm::random(&ModelConfig::tiny(Architecture::Llama), 5, &test_device());
    let cfg = SamplingConfig::greedy(5);
    let rows = overlapping_prompts();
    let batched = generate(&model, &rows, &cfg, &vec![0; rows.len()], &[], 0, None);
    for (r, p) in rows.iter().enumerate() {
        let alone = generate(&model, std::slice::from_ref(p), &cfg, &[0], &[], 0, None);
        assert_eq!(batched[r].tokens, alone[0].tokens, "row {r}");
        let diff = batched[r].logprobs.iter().zip(&alone[0].logprobs).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(diff < 1e-4, "row {r}: {diff}");
    }
}

#[test]
fn sampling_is_seeded_per_row_and_stops_at_eos() {
    let model = CausalLm::random(&ModelConfig::tiny(Architecture::Llama), 3, &test_device());
    let cfg = SamplingConfig { temperature: 1.5, max_new_tokens: 12, ..Default::default() };
    let a = generate(&model, &prompts(), &cfg, &[5, 6, 7], &[], 0, None);
    let b = generate(&model, &prompts()[1..2], &cfg, &[6], &[], 0, None);
    assert_eq!(a[1].tokens, b[0].tokens, "a row's sample depends on its seed only");
    let stop = a[0].tokens[2];
    let c = generate(&model, &prompts(), &cfg, &[5, 6, 7], &[stop], 0, None);
    let first = a[0].tokens.iter().position(|t| *t == stop).unwrap();
    assert_eq!(c[0].tokens, a[0].tokens[..=first], "stops right after the end-of-turn token");
    assert!(c[0].finished);
}

#[test]
fn autodiff_logprobs_equal_sampling_logprobs_and_gradients_reach_every_parameter() {
    let device = test_device().autodiff();
    let model = CausalLm::random(&ModelConfig::tiny(Architecture::Qwen3), 4, &device);
    let cfg = SamplingConfig { temperature: 0.7, top_p: 0.9, max_new_tokens: 8, ..Default::default() };
    let rollout = model.valid();
    let gens = generate(&rollout, &prompts(), &cfg, &[1, 2, 3], &[], 0, None);
    let completions: Vec<Vec<u32>> = gens.iter().map(|g| g.tokens.clone()).collect();
    let lp = completion_logprobs(&model, &prompts(), &completions, 0, cfg.logprob_temperature());
    let got: Vec<f32> = lp.clone().into_data().try_to_vec().unwrap();
    let want: Vec<f64> = gens.iter().flat_map(|g| g.logprobs.clone()).collect();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!((*g as f64 - w).abs() < 1e-4, "{g} vs {w}");
    }
    let grads = lp.sum().backward();
    struct Check<'a>(&'a burn::tensor::Gradients, usize, Vec<String>);
    impl ModuleVisitor for Check<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.1 += 1;
            match param.val().grad(self.0) {
                Some(g) if g.clone().abs().sum().into_scalar::<f32>() > 0.0 => {}
                _ => self.2.push(format!("{:?}", param.id)),
            }
        }
    }
    let mut check = Check(&grads, 0, Vec::new());
    model.visit(&mut check);
    assert!(check.1 >= 2 * 11 + 2, "visited {} parameters", check.1);
    assert!(check.2.is_empty(), "parameters without gradient: {:?}", check.2);
}

#[test]
fn steering_with_zero_vectors_is_bit_identical_and_touches_only_the_last_position() {
    let model = CausalLm::random(&ModelConfig::tiny(Architecture::Llama), 6, &test_device());
    let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![3i64, 9, 27, 81], [1, 4]), &test_device());
    let valid = vec![vec![true; 4]];
    let plain: Vec<f32> = model.hidden(ids.clone(), &valid, None, None).into_data().try_to_vec().unwrap();
    let zeros: Vec<Tensor<2>> = (0..2).map(|_| Tensor::zeros([1, 32], &test_device())).collect();
    let steered_zero: Vec<f32> = model.hidden(ids.clone(), &valid, None, Some(&zeros)).into_data().try_to_vec().unwrap();
    assert_eq!(plain, steered_zero, "alpha = 0 is exactly no steering");
    let push: Vec<Tensor<2>> = (0..2).map(|_| Tensor::ones([1, 32], &test_device()) * 0.5).collect();
    let steered: Vec<f32> = model.hidden(ids, &valid, None, Some(&push)).into_data().try_to_vec().unwrap();
    assert_eq!(plain[..3 * 32], steered[..3 * 32], "earlier positions are untouched");
    assert!(plain[3 * 32..].iter().zip(&steered[3 * 32..]).any(|(a, b)| (a - b).abs() > 1e-3), "the last position moves");

    // One vector per row: a batch of the same prompt, row 0 unsteered, row 1 pushed, equals
    // each run alone.
    let both = Tensor::<2, Int>::from_data(TensorData::new(vec![3i64, 9, 27, 81, 3, 9, 27, 81], [2, 4]), &test_device());
    let per_row: Vec<Tensor<2>> =
        (0..2).map(|_| Tensor::cat(vec![Tensor::zeros([1, 32], &test_device()), Tensor::ones([1, 32], &test_device()) * 0.5], 0)).collect();
    let rows: Vec<f32> = model.hidden(both, &[vec![true; 4], vec![true; 4]], None, Some(&per_row)).into_data().try_to_vec().unwrap();
    let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5);
    assert!(close(&rows[..4 * 32], &plain), "row 0 is unsteered");
    assert!(close(&rows[4 * 32..], &steered), "row 1 is steered alone");
}

/// The prefix-tree layout of training log-probs equals the padded one: shared prompts (G
/// completions of each), a prompt that is a prefix of another, a lone prompt.
#[test]
fn tree_completion_logprobs_equal_the_padded_ones() {
    use selfemo_model::completion_logprobs_tree;
    for arch in [Architecture::Llama, Architecture::Qwen3] {
        let model = CausalLm::random(&ModelConfig::tiny(arch), 4, &test_device());
        let prompts = vec![vec![3, 17, 42, 5], vec![3, 17, 42, 5], vec![3, 17, 42, 5, 9], vec![90, 1], vec![3, 17, 42, 5]];
        let completions = vec![vec![7, 8, 9], vec![7, 10], vec![11], vec![12, 13, 14, 15], vec![7, 8, 9]];
        let padded: Vec<f32> = completion_logprobs(&model, &prompts, &completions, 0, 0.7).into_data().try_to_vec().unwrap();
        let tree: Vec<f32> = completion_logprobs_tree(&model, &prompts, &completions, 0.7).into_data().try_to_vec().unwrap();
        assert_eq!(padded.len(), 13);
        let gap = padded.iter().zip(&tree).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(gap < 1e-4, "{arch:?}: {padded:?} vs {tree:?}");
        assert_eq!(tree[..3], tree[10..], "a repeated sequence gets the same log-probs");
    }
}

/// A tree continuing a cache that holds left padding (and was grown by a decoded token), large
/// enough to be attended in blocks: every node's hidden state equals running its path alone
/// after the same cache.
#[test]
fn a_blocked_tree_after_a_padded_cache_equals_each_path_alone() {
    use selfemo_model::model::TreeMask;
    use selfemo_model::tree_attention::TreeBlocks;
    use selfemo_model::trie::Trie;
    for arch in [Architecture::Llama, Architecture::Qwen3] {
        let model = CausalLm::random(&ModelConfig::tiny(arch), 9, &test_device());
        let device = test_device();
        // the cache: 2 padding slots, 26 header tokens, then one decoded token
        let mut cache = KvCache::new(model.num_layers(), 1);
        let header: Vec<i64> = (0..28).map(|i| (3 + 5 * i) % 96).collect();
        let valid: Vec<bool> = (0..28).map(|i| i >= 2).collect();
        model.hidden(Tensor::<2, Int>::from_data(TensorData::new(header, [1, 28]), &device), &[valid], Some(&mut cache), None);
        model.hidden(Tensor::<2, Int>::from_data(TensorData::new(vec![7i64], [1, 1]), &device), &[vec![true]], Some(&mut cache), None);
        // 10 paths sharing 10 tokens, then 30 of their own
        let paths: Vec<Vec<u32>> = (0..10u32).map(|p| (0..40u32).map(|i| if i < 10 { 11 + i } else { (p * 31 + i * 7) % 96 }).collect()).collect();
        let trie = Trie::of(paths.iter().map(Vec::as_slice));
        let n = trie.tokens.len();
        let past = cache.len();
        let branch = vec![past; n];
        let tree = model.hidden_tree(&trie.tokens, &trie.parent, &branch, &cache);
        let mut reserved = cache.clone();
        let capacity = reserved.reserve(n);
        let layout = TreeMask::new(&trie.parent, &branch, &reserved);
        let blocks = TreeBlocks::plan(&layout.mask, n, capacity, 2, &device).expect("the tree is attended in blocks");
        assert!(blocks.blocks > 1 && blocks.width < capacity / 2, "{} blocks of {} of the {capacity} key slots", blocks.blocks, blocks.width);
        let d = tree.dims()[2];
        let tree = to_vec(tree.reshape([n, d]));
        for (path, nodes) in paths.iter().zip(&trie.paths) {
            let mut alone_cache = cache.clone();
            let ids: Vec<i64> = path.iter().map(|t| *t as i64).collect();
            let alone = model.hidden(Tensor::<2, Int>::from_data(TensorData::new(ids, [1, 40]), &device), &[vec![true; 40]], Some(&mut alone_cache), None);
            let alone = to_vec(alone.reshape([40, d]));
            for (i, &node) in nodes.iter().enumerate() {
                let gap = (0..d).map(|c| (alone[i * d + c] - tree[node * d + c]).abs()).fold(0.0f32, f32::max);
                assert!(gap < 1e-4, "{arch:?}: token {i} of a path differs by {gap}");
            }
        }
    }
}
