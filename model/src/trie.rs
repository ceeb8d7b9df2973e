//! Token sequences merged into a prefix tree: what tree-masked passes run (shared prefill,
//! label scoring), each shared prefix once.

/// Token sequences merged into a prefix tree: each node a token, its parent, and per sequence
/// its path of nodes.
pub struct Trie {
    /// Node tokens, parents before children.
    pub tokens: Vec<u32>,
    /// Each node's parent (`None`: a root).
    pub parent: Vec<Option<usize>>,
    /// Per sequence, its nodes in order.
    pub paths: Vec<Vec<usize>>,
}

impl Trie {
    /// The trie of `sequences`, merged where they share a prefix.
    pub fn of<'a>(sequences: impl Iterator<Item = &'a [u32]>) -> Self {
        let mut trie = Trie { tokens: Vec::new(), parent: Vec::new(), paths: Vec::new() };
        let mut children: std::collections::HashMap<(Option<usize>, u32), usize> = std::collections::HashMap::new();
        for seq in sequences {
            let mut at = None;
            let path = seq
                .iter()
                .map(|&t| {
                    let node = *children.entry((at, t)).or_insert_with(|| {
                        trie.tokens.push(t);
                        trie.parent.push(at);
                        trie.tokens.len() - 1
                    });
                    at = Some(node);
                    node
                })
                .collect();
            trie.paths.push(path);
        }
        trie
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_prefixes_become_one_path() {
        let t = Trie::of([&[1, 2, 3][..], &[1, 2, 4], &[5], &[1, 2, 3]].into_iter());
        assert_eq!(t.tokens, [1, 2, 3, 4, 5]);
        assert_eq!(t.parent, [None, Some(0), Some(1), Some(1), None]);
        assert_eq!(t.paths, [vec![0, 1, 2], vec![0, 1, 3], vec![4], vec![0, 1, 2]]);
    }
}
