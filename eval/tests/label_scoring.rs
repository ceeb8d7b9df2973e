//! Score mode: branching targets off a shared dialogue prefix in the KV cache gives the same
//! label log-probs as running each target's full prompt alone.

use burn::tensor::{Device, Int, Tensor, TensorData, activation};
use selfemo_datasets::{Dataset, Split};
use selfemo_eval::label_scoring::{ScoreLimits, ScorePrompt, layout, score_targets};
use selfemo_model::label_scores::{ScoreQuery, TokenLayout, header_cache, score_dialogue, score_prompts};
use selfemo_model::{Architecture, CausalLm, LoadOptions, LoadedModel, Message, ModelConfig, ModelSource};

/// log π(label | prompt) from one uncached pass over prompt · label.
fn alone(model: &CausalLm, prompt: &[u32], label: &[u32]) -> f64 {
    let ids: Vec<i64> = prompt.iter().chain(label).map(|t| *t as i64).collect();
    let n = ids.len();
    let device = model.model.embed_tokens.weight.device();
    let logits = model.forward_logits(Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), &device));
    let v = logits.dims()[2];
    let lp = activation::log_softmax(logits.reshape([n, v]), 1).into_data().try_to_vec::<f32>().unwrap();
    label.iter().enumerate().map(|(j, t)| lp[(prompt.len() + j - 1) * v + *t as usize] as f64).sum()
}

fn max_gap(model: &CausalLm, layout: &TokenLayout, queries: &[ScoreQuery], shared: &[Vec<f64>]) -> f64 {
    let mut gap = 0.0f64;
    for (q, scores) in queries.iter().zip(shared) {
        for (label, s) in layout.labels.iter().zip(scores) {
            gap = gap.max((alone(model, &layout.prompt(q), label) - s).abs());
        }
    }
    gap
}

#[test]
fn shared_prefix_scores_equal_scoring_each_target_alone() {
    for arch in [Architecture::Llama, Architecture::Qwen3] {
        let model = CausalLm::random(&ModelConfig::tiny(arch), 7, &Device::flex());
        let lines: Vec<Vec<u32>> = vec![vec![10, 11, 12], vec![13], vec![14, 15, 16, 17], vec![18, 19], vec![20, 21, 22], vec![23]];
        let layout = TokenLayout { header: vec![2, 3, 4, 5], lines, labels: vec![vec![30], vec![31, 32], vec![33, 34, 35], vec![36]] };
        // window 2: starts slide (0, 0, 0, 1, 2, 3), suffixes of different lengths
        let queries: Vec<ScoreQuery> = (0..6).map(|t| ScoreQuery { turn: t, start: t.saturating_sub(2), suffix: (40..42 + t as u32 % 3).collect() }).collect();
        let header = header_cache(&model, &layout.header);
        for rows in [1, 2, 8] {
            let shared = score_dialogue(&model, &layout, &queries, &header, rows);
            let gap = max_gap(&model, &layout, &queries, &shared);
            assert!(gap < 1e-4, "{arch:?}, {rows} rows: max |shared − alone| = {gap}");
        }
    }
}

#[test]
fn whole_prompts_merged_into_a_prefix_tree_score_like_each_alone() {
    for arch in [Architecture::Llama, Architecture::Qwen3] {
        let model = CausalLm::random(&ModelConfig::tiny(arch), 3, &Device::flex());
        // A shared header, then prompts that share lines (a dialogue's targets), repeat, diverge
        // at once, and differ in length; labels of 1 to 3 tokens.
        let prompts: Vec<Vec<u32>> = vec![
            vec![2, 3, 4, 10, 11, 40],
            vec![2, 3, 4, 10, 11, 12, 13, 40, 41],
            vec![2, 3, 4, 10, 11, 12, 13, 14, 40],
            vec![2, 3, 4, 20, 40],
            vec![2, 3, 4, 10, 11, 40],
            vec![2, 3, 4, 10, 40, 42, 43],
        ];
        let labels = vec![vec![30], vec![31, 32], vec![33, 34, 35]];
        for rows in [1, 3, 8] {
            let scores = score_prompts(&model, &prompts, &labels, rows);
            assert_eq!(scores.len(), prompts.len());
            for (p, s) in prompts.iter().zip(&scores) {
                for (l, x) in labels.iter().zip(s) {
                    let gap = (alone(&model, p, l) - x).abs();
                    assert!(gap < 1e-4, "{arch:?}, {rows} rows, prompt {p:?}, label {l:?}: gap {gap}");
                }
            }
        }
    }
}

#[test]
fn real_prompts_decode_to_the_chat_and_score_like_each_target_alone() {
    let Some(gguf) = selfemo_model::fetch::default_model_for_tests() else { return };
    let m = LoadedModel::load(&ModelSource::Gguf(gguf), LoadOptions { max_layers: Some(2), ..Default::default() }, &Device::flex()).unwrap();
    let corpus = selfemo_datasets::load(Dataset::Meld, None).unwrap();
    let targets: Vec<_> = corpus.targets(Split::Dev).into_iter().take(5).collect();
    let d = targets[0].dialogue;
    let turns: Vec<usize> = targets.iter().filter(|t| t.dialogue == d).map(|t| t.turn).collect();
    let prompt = ScorePrompt::default();
    let (lay, queries) = layout(&m.tokenizer, &prompt, &corpus, d, &turns, 2, 512);

    // the pieces decode to the ordinary chat rendering of the last query's window
    let q = queries.last().unwrap();
    let lines: String = corpus.dialogues[d].utterances[q.start..=q.turn].iter().map(|u| format!("{}: {}\n", u.speaker, u.text)).collect();
    let speaker = &corpus.dialogues[d].utterances[q.turn].speaker;
    let system = prompt.system.replace("{labels}", &Dataset::Meld.labels().joined());
    let user = format!("{}{lines}{}", prompt.preamble, prompt.question.replace("{speaker}", speaker));
    let chat = m.tokenizer.chat_prompt(&[Message::new("system", system), Message::new("user", user)]) + &prompt.answer_prefix;
    assert_eq!(m.tokenizer.decode(&lay.prompt(q), false), chat);
    assert_eq!(lay.labels.len(), 7);

    let shared = score_targets(&m.model, &m.tokenizer, &prompt, &corpus, &targets, ScoreLimits { window: 2.into(), budget: 512, rows: 4 }, &mut |_| ());
    let mine: Vec<Vec<f64>> = shared.iter().zip(&targets).filter(|(_, t)| t.dialogue == d).map(|(s, _)| s.clone()).collect();
    let gap = max_gap(&m.model, &lay, &queries, &mine);
    assert!(gap < 1e-4, "max |shared − alone| = {gap}");
}

#[test]
fn the_hallucination_probe_answers_both_questions_of_every_target() {
    use selfemo_eval::hallucination::{probe, report};
    let Some(gguf) = selfemo_model::fetch::default_model_for_tests() else { return };
    let m = LoadedModel::load(&ModelSource::Gguf(gguf), LoadOptions { max_layers: Some(2), ..Default::default() }, &Device::flex()).unwrap();
    let corpus = selfemo_datasets::load(Dataset::Emorynlp, None).unwrap();
    let targets: Vec<_> = corpus.targets(Split::Dev).into_iter().take(6).collect();
    let mut seen = 0;
    let answers = probe(&m.model, &m.tokenizer, &corpus, &targets, ScoreLimits { window: 4.into(), budget: 256, rows: 3 }, &mut |k| seen += k);
    assert_eq!((answers.len(), seen), (6, 6), "every EmoryNLP label has a confusable partner");
    let r = report(&answers);
    assert_eq!(r.pairs, 6);
    // the same questions asked one dialogue at a time give the same answers
    let one_by_one: Vec<_> = targets
        .chunk_by(|a, b| a.dialogue == b.dialogue)
        .flat_map(|t| probe(&m.model, &m.tokenizer, &corpus, t, ScoreLimits { window: 4.into(), budget: 256, rows: 1 }, &mut |_| ()))
        .collect();
    assert_eq!(one_by_one, answers);
}

#[test]
fn block_windows_make_a_dialogues_prompts_share_their_lines() {
    use selfemo_datasets::{ContextSpan, WindowAnchor};
    use selfemo_eval::recognition::prompts;
    use selfemo_model::trie::Trie;
    let Some(gguf) = selfemo_model::fetch::default_model_for_tests() else { return };
    let m = LoadedModel::load(&ModelSource::Gguf(gguf), LoadOptions { max_layers: Some(1), ..Default::default() }, &Device::flex()).unwrap();
    let corpus = selfemo_datasets::load(Dataset::Meld, None).unwrap();
    // the longest train dialogue, under the quickstart's template (the target is the last line)
    let targets = corpus.targets(Split::Train);
    let longest = targets.iter().max_by_key(|t| t.turn).unwrap().dialogue;
    let mine: Vec<_> = targets.into_iter().filter(|t| t.dialogue == longest).collect();
    assert!(mine.len() >= 20, "{} targets", mine.len());
    let template = selfemo_selfplay::RecogniserPrompt { user: "{context}\n\nEmotion of {speaker} in \"{target}\"?".into(), ..Default::default() };
    let blocks = ContextSpan { turns: 8, anchor: WindowAnchor::Block };
    let built = |anchor| prompts(&corpus, &mine, &template, ContextSpan { anchor, ..blocks }, 4096, &m.tokenizer);
    let (sliding, block) = (built(WindowAnchor::Sliding), built(WindowAnchor::Block));
    let common = |a: &[u32], b: &[u32]| a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let utterances = &corpus.dialogues[longest].utterances;
    let mut same_block = 0;
    for k in 0..mine.len() - 1 {
        let (t, next) = (mine[k].turn, mine[k + 1].turn);
        let line = format!("{}: {}", utterances[t].speaker, utterances[t].text);
        let shared_block = m.tokenizer.decode(&block[k].ids[..common(&block[k].ids, &block[k + 1].ids)], false);
        // within a block, the next target's prompt carries this one's whole context and line
        if blocks.start(t) == blocks.start(next) {
            same_block += 1;
            assert!(shared_block.contains(&line), "turns {t}, {next}: the shared prefix lacks {line:?}");
        }
        // sliding windows past the first w turns start at different lines
        if t > blocks.turns {
            let shared_sliding = m.tokenizer.decode(&sliding[k].ids[..common(&sliding[k].ids, &sliding[k + 1].ids)], false);
            assert!(!shared_sliding.contains(&line), "turns {t}, {next}: sliding windows shared {line:?}");
        }
    }
    assert!(same_block * 2 > mine.len(), "{same_block} pairs in one block");
    let nodes = |ps: &[selfemo_eval::recognition::RecognitionPrompt]| Trie::of(ps.iter().map(|p| p.ids.as_slice())).tokens.len();
    let (n_sliding, n_block) = (nodes(&sliding), nodes(&block));
    assert!(2 * n_block < n_sliding, "a dialogue's tree: {n_block} nodes in blocks against {n_sliding} sliding");
}
