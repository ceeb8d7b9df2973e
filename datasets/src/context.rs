//! The context-window view of a target: the turn and the turns before it (past only), from
//! where a [`ContextSpan`] starts them.

use crate::types::{Dialogue, Utterance};
use serde::{Deserialize, Serialize};

/// Where a target's window of `w` past turns starts [RECON: `block` is our choice, for cost].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowAnchor {
    /// The `w` turns right before the target.
    #[default]
    Sliding,
    /// Turns grouped in blocks of `w`: a target of block b ≥ 1 sees from the start of block
    /// b − 1, so between `w` and `2w − 1` past turns (block 0 sees all of its past). A block's
    /// targets share their context up to each one's own line, so a dialogue's prompts form a
    /// prefix tree in which each line runs about twice instead of `w + 1` times.
    Block,
}

/// Which past turns a target sees: `turns` of them (all there are when fewer), anchored by
/// `anchor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextSpan {
    /// w, the past turns every target with that many before it sees.
    pub turns: usize,
    /// Where the window starts.
    pub anchor: WindowAnchor,
}

impl ContextSpan {
    /// The first turn of the window of turn `turn`.
    pub fn start(self, turn: usize) -> usize {
        let w = self.turns;
        match self.anchor {
            WindowAnchor::Sliding => turn.saturating_sub(w),
            WindowAnchor::Block if w == 0 => turn,
            WindowAnchor::Block => (turn / w).saturating_sub(1) * w,
        }
    }
}

impl From<usize> for ContextSpan {
    /// A sliding window of `turns` past turns.
    fn from(turns: usize) -> Self {
        Self { turns, anchor: WindowAnchor::Sliding }
    }
}

/// A target turn with the turns before it, as the recogniser sees it.
#[derive(Debug, Clone, Copy)]
pub struct ContextWindow<'a> {
    /// The turns before the target that its span shows, oldest first, labelled or not.
    pub context: &'a [Utterance],
    /// The turn whose emotion is asked for.
    pub target: &'a Utterance,
    /// Index of the target in its dialogue.
    pub turn: usize,
}

impl<'a> ContextWindow<'a> {
    /// The window of turn `turn` of `dialogue` under `span` (a number is a sliding window of
    /// that many previous turns).
    ///
    /// Returns `None` when `turn` is past the end of the dialogue.
    pub fn new(dialogue: &'a Dialogue, turn: usize, span: impl Into<ContextSpan>) -> Option<Self> {
        let target = dialogue.utterances.get(turn)?;
        let start = span.into().start(turn);
        Some(Self { context: &dialogue.utterances[start..turn], target, turn })
    }

    /// Drops the oldest context turns so that at most `keep` remain (never the target).
    pub fn keep_last(self, keep: usize) -> Self {
        let n = self.context.len();
        Self { context: &self.context[n.saturating_sub(keep)..], ..self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Split;

    fn dialogue(n: usize) -> Dialogue {
        Dialogue {
            id: "d".into(),
            split: Split::Train,
            utterances: (0..n).map(|i| Utterance { speaker: format!("s{}", i % 2), text: format!("u{i}"), label: None }).collect(),
        }
    }

    #[test]
    fn window_holds_the_previous_w_turns_in_order() {
        let d = dialogue(10);
        let w = ContextWindow::new(&d, 7, 3).unwrap();
        let texts: Vec<_> = w.context.iter().map(|u| u.text.as_str()).collect();
        assert_eq!(texts, ["u4", "u5", "u6"]);
        assert_eq!(w.target.text, "u7");
        assert_eq!(w.context[0].speaker, "s0");
    }

    #[test]
    fn window_is_short_at_the_start_and_none_past_the_end() {
        let d = dialogue(4);
        assert_eq!(ContextWindow::new(&d, 1, 20).unwrap().context.len(), 1);
        assert_eq!(ContextWindow::new(&d, 0, 20).unwrap().context.len(), 0);
        assert!(ContextWindow::new(&d, 4, 2).is_none());
        let w = ContextWindow::new(&d, 3, 20).unwrap().keep_last(1);
        assert_eq!(w.context[0].text, "u2");
        assert_eq!(w.target.text, "u3");
    }

    #[test]
    fn block_windows_start_at_the_previous_block_and_share_it() {
        let d = dialogue(12);
        let span = ContextSpan { turns: 3, anchor: WindowAnchor::Block };
        let first: Vec<usize> = (0..12).map(|t| t - ContextWindow::new(&d, t, span).unwrap().context.len()).collect();
        assert_eq!(first, [0, 0, 0, 0, 0, 0, 3, 3, 3, 6, 6, 6]);
        for t in 0..12 {
            let past = ContextWindow::new(&d, t, span).unwrap().context.len();
            // at least the sliding window's turns, fewer than two blocks
            assert!(past >= t.min(3) && past < 2 * 3, "turn {t}: {past} past turns");
        }
        let none = ContextSpan { turns: 0, anchor: WindowAnchor::Block };
        assert_eq!(ContextWindow::new(&d, 5, none).unwrap().context.len(), 0);
    }
}
