//! Token sequences merged into a prefix tree: what tree-masked passes run (shared prefill,
//! label scoring), each shared prefix once.

/// Token sequences merged into a prefix tree: each node a token, its parent, and per sequence
/// its path of nodes.
pub struct Trie {
    /// Node tokens in depth-first order (children in the order their sequences came): a
    /// subtree's nodes are consecutive, so blocks of consecutive nodes see few keys
    /// ([`crate::tree_attention`]).
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
        trie.depth_first()
    }

    /// The same trie with its nodes renumbered in depth-first order.
    fn depth_first(self) -> Self {
        let (order, rank) = depth_first_order(&self.parent);
        Trie {
            tokens: order.iter().map(|&i| self.tokens[i]).collect(),
            parent: order.iter().map(|&i| self.parent[i].map(|p| rank[p])).collect(),
            paths: self.paths.into_iter().map(|path| path.into_iter().map(|i| rank[i]).collect()).collect(),
        }
    }
}

/// The depth-first order of a forest given by each node's parent (children and roots in index
/// order): the nodes in that order, and each node's place in it. Parents come before
/// children, and a subtree's nodes are consecutive.
pub fn depth_first_order(parent: &[Option<usize>]) -> (Vec<usize>, Vec<usize>) {
    let n = parent.len();
    let mut kids: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut stack: Vec<usize> = Vec::new();
    for (i, p) in parent.iter().enumerate() {
        match p {
            Some(p) => kids[*p].push(i),
            None => stack.push(i),
        }
    }
    stack.reverse();
    let (mut order, mut rank) = (Vec::with_capacity(n), vec![0; n]);
    while let Some(i) = stack.pop() {
        rank[i] = order.len();
        order.push(i);
        stack.extend(kids[i].iter().rev());
    }
    (order, rank)
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

    #[test]
    fn nodes_are_numbered_depth_first() {
        // Inserted 1 2 3, then 5 6, then 4 under 1 2: the subtree of 1 comes first, whole.
        let t = Trie::of([&[1, 2, 3][..], &[5, 6], &[1, 2, 4]].into_iter());
        assert_eq!(t.tokens, [1, 2, 3, 4, 5, 6]);
        assert_eq!(t.parent, [None, Some(0), Some(1), Some(1), None, Some(4)]);
        assert_eq!(t.paths, [vec![0, 1, 2], vec![4, 5], vec![0, 1, 3]]);
    }
}
