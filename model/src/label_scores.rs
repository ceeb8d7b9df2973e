//! Label scoring in tree-masked passes: log π(label | prompt) of every candidate label, with
//! the tokens prompts share run once. A dialogue laid out as pieces ([`TokenLayout`]: a
//! header, its lines) runs its lines once and lets each target branch off the cache
//! ([`score_dialogue`]); whole prompts merge into a prefix trie ([`score_prompts`]). The
//! vocabulary projection runs only where a label token is predicted.

use crate::model::{CausalLm, KvCache};
use crate::trie::{Trie, depth_first_order};
use burn::tensor::{Int, Tensor, TensorData, activation};

/// A dialogue as token pieces: `header` (chat start up to the first line), one piece per line,
/// and per target its suffix (question, end of turn, answer prefix).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLayout {
    /// Chat start through the preamble.
    pub header: Vec<u32>,
    /// `speaker: text\n` of every turn.
    pub lines: Vec<Vec<u32>>,
    /// Candidate labels' tokens, in label-set order.
    pub labels: Vec<Vec<u32>>,
}

/// One target to score: its turn, the first line its window shows, and its suffix tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreQuery {
    /// Target turn t.
    pub turn: usize,
    /// First context line s (s ≤ t).
    pub start: usize,
    /// Question, end of turn, assistant start and answer prefix.
    pub suffix: Vec<u32>,
}

impl TokenLayout {
    /// The full prompt of `q` followed by nothing: header, lines s..=t, suffix.
    pub fn prompt(&self, q: &ScoreQuery) -> Vec<u32> {
        let mut ids = self.header.clone();
        self.lines[q.start..=q.turn].iter().for_each(|l| ids.extend(l));
        ids.extend(&q.suffix);
        ids
    }
}

/// log π(label | prompt) for every query and label: `[query][label]`, the sum over the label's
/// tokens. Queries with the same `start` share one pass over their lines; then up to `rows` of
/// them, with every label's tokens, branch off that prefix as a tree in one more pass.
/// `header_cache` (the header already run, batch 1) is where every prefix starts.
pub fn score_dialogue(model: &CausalLm, layout: &TokenLayout, queries: &[ScoreQuery], header_cache: &KvCache, rows: usize) -> Vec<Vec<f64>> {
    let mut out = vec![Vec::new(); queries.len()];
    let mut i = 0;
    while i < queries.len() {
        let start = queries[i].start;
        let group_end = (i..queries.len()).find(|&j| queries[j].start != start).unwrap_or(queries.len());
        let last_turn = queries[i..group_end].iter().map(|q| q.turn).max().unwrap_or(start);
        // 1. the shared prefix: lines start..=last_turn after the header
        let mut prefix = header_cache.clone();
        let device = model.model.embed_tokens.weight.device();
        let ids: Vec<i64> = layout.lines[start..=last_turn].iter().flatten().map(|t| *t as i64).collect();
        let n = ids.len();
        model.hidden(Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), &device), &[vec![true; n]], Some(&mut prefix), None);
        // 2. the queries of this prefix, `rows` at a time
        for chunk_start in (i..group_end).step_by(rows.max(1)) {
            let chunk = chunk_start..(chunk_start + rows.max(1)).min(group_end);
            let keys = |q: &ScoreQuery| layout.header.len() + layout.lines[start..=q.turn].iter().map(Vec::len).sum::<usize>();
            let scores = score_tree(model, &prefix, &queries[chunk.clone()], &keys, &layout.labels);
            for (k, s) in chunk.zip(scores) {
                out[k] = s;
            }
        }
        i = group_end;
    }
    out
}

/// The header's cache, run again only when the header changes (once per dataset in practice).
#[derive(Default)]
pub struct HeaderCache {
    ids: Vec<u32>,
    cache: Option<KvCache>,
}

impl HeaderCache {
    /// The cache of `header`, reused when it is the header of the previous call.
    pub fn get(&mut self, model: &CausalLm, header: &[u32]) -> &KvCache {
        if self.cache.is_none() || self.ids != header {
            self.ids = header.to_vec();
            self.cache = Some(header_cache(model, header));
        }
        self.cache.as_ref().expect("set above")
    }
}

/// Runs `header` once (batch 1): the cache every dialogue of a dataset starts from.
pub fn header_cache(model: &CausalLm, header: &[u32]) -> KvCache {
    let mut cache = KvCache::new(model.num_layers(), 1);
    let device = model.model.embed_tokens.weight.device();
    let ids: Vec<i64> = header.iter().map(|t| *t as i64).collect();
    let n = ids.len();
    model.hidden(Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), &device), &[vec![true; n]], Some(&mut cache), None);
    cache
}

/// A tree pass under construction: tokens, each one's parent, each root's cached prefix
/// length, and the picks (tree index, the m token ids scored there) in the order made.
#[derive(Default)]
struct LabelTree {
    tokens: Vec<u32>,
    parent: Vec<Option<usize>>,
    branch: Vec<usize>,
    picks: Vec<(usize, Vec<u32>)>,
}

impl LabelTree {
    /// Every label after node `leaf`: its first token scored at the leaf, and each
    /// multi-token label's later tokens scored along a chain of its leading tokens.
    fn branch_labels(&mut self, leaf: usize, labels: &[Vec<u32>]) {
        let m = labels.len();
        self.picks.push((leaf, labels.iter().map(|l| l[0]).collect()));
        for l in labels.iter().filter(|l| l.len() > 1) {
            for j in 0..l.len() - 1 {
                self.parent.push(Some(if j == 0 { leaf } else { self.tokens.len() - 1 }));
                self.branch.push(0);
                self.tokens.push(l[j]);
                self.picks.push((self.tokens.len() - 1, vec![l[j + 1]; m]));
            }
        }
    }

    /// The same tree with its tokens in depth-first order (picks in the order made), so that
    /// each leaf's label chains follow it and blocks of the pass see few keys
    /// ([`crate::tree_attention`]).
    fn depth_first(self) -> Self {
        let (order, rank) = depth_first_order(&self.parent);
        LabelTree {
            tokens: order.iter().map(|&i| self.tokens[i]).collect(),
            parent: order.iter().map(|&i| self.parent[i].map(|p| rank[p])).collect(),
            branch: order.iter().map(|&i| self.branch[i]).collect(),
            picks: self.picks.into_iter().map(|(i, w)| (rank[i], w)).collect(),
        }
    }

    /// One tree pass off `prefix`, the vocabulary projection only at the picks; then per leaf
    /// (in the order branched) the log-prob of every label, the sum over its tokens.
    fn score(self, model: &CausalLm, prefix: &KvCache, labels: &[Vec<u32>]) -> Vec<Vec<f64>> {
        let this = self.depth_first();
        let m = labels.len();
        let leaves = this.picks.len() / (1 + labels.iter().map(|l| l.len() - 1).sum::<usize>());
        let hidden = model.hidden_tree(&this.tokens, &this.parent, &this.branch, prefix);
        let [_, n, d] = hidden.dims();
        let device = hidden.device();
        let p = this.picks.len();
        let at = Tensor::<1, Int>::from_data(TensorData::new(this.picks.iter().map(|(i, _)| *i as i64).collect(), [p]), &device);
        let want = Tensor::<2, Int>::from_data(TensorData::new(this.picks.iter().flat_map(|(_, w)| w.iter().map(|t| *t as i64)).collect(), [p, m]), &device);
        let lp = activation::log_softmax(model.logits(hidden.reshape([n, d]).select(0, at)), 1).gather(1, want);
        let lp = lp.try_to_vec_as::<f32>().expect("the backend reads back its own tensor");
        // walk the picks in the order they were made
        let mut next = 0;
        (0..leaves)
            .map(|_| {
                let mut scores: Vec<f64> = lp[next * m..(next + 1) * m].iter().map(|x| *x as f64).collect();
                next += 1;
                for (k, l) in labels.iter().enumerate().filter(|(_, l)| l.len() > 1) {
                    for _ in 1..l.len() {
                        scores[k] += lp[next * m] as f64;
                        next += 1;
                    }
                }
                scores
            })
            .collect()
    }
}

/// Label log-probs of `queries`, each continuing the first `keys(q)` positions of `prefix`:
/// one tree pass holding every query's suffix and, after it, every label.
fn score_tree(model: &CausalLm, prefix: &KvCache, queries: &[ScoreQuery], keys: &dyn Fn(&ScoreQuery) -> usize, labels: &[Vec<u32>]) -> Vec<Vec<f64>> {
    let mut tree = LabelTree::default();
    for q in queries {
        for (j, t) in q.suffix.iter().enumerate() {
            tree.parent.push((j > 0).then(|| tree.tokens.len() - 1));
            tree.branch.push(keys(q));
            tree.tokens.push(*t);
        }
        let leaf = tree.tokens.len() - 1;
        tree.branch_labels(leaf, labels);
    }
    tree.score(model, prefix, labels)
}

/// log π(label | prompt) of every label after each whole prompt (`[prompt][label]`): the
/// prompts' longest common prefix runs once, then up to `rows` prompts at a time run as one
/// prefix tree (what consecutive prompts share, a dialogue's lines say, runs once) with every
/// label after each. Each prompt must be at least 2 tokens long.
pub fn score_prompts(model: &CausalLm, prompts: &[Vec<u32>], labels: &[Vec<u32>], rows: usize) -> Vec<Vec<f64>> {
    let Some(first) = prompts.first() else { return Vec::new() };
    let shortest = prompts.iter().map(Vec::len).min().unwrap_or(0);
    let common = (0..shortest.saturating_sub(1)).take_while(|&i| prompts.iter().all(|p| p[i] == first[i])).count();
    if common == 0 {
        assert!(prompts.len() > 1, "a scored prompt needs at least 2 tokens");
        return prompts.iter().flat_map(|p| score_prompts(model, std::slice::from_ref(p), labels, rows)).collect();
    }
    let cache = header_cache(model, &first[..common]);
    prompts
        .chunks(rows.max(1))
        .flat_map(|chunk| {
            let trie = Trie::of(chunk.iter().map(|p| &p[common..]));
            let mut tree = LabelTree { branch: vec![common; trie.tokens.len()], tokens: trie.tokens, parent: trie.parent, picks: Vec::new() };
            for path in &trie.paths {
                tree.branch_labels(*path.last().expect("every prompt extends the common prefix"), labels);
            }
            tree.score(model, &cache, labels)
        })
        .collect()
}
