//! The context-window view of a target: the turn and the `w` turns before it (past only).

use crate::types::{Dialogue, Utterance};

/// A target turn with the turns before it, as the recogniser sees it.
#[derive(Debug, Clone, Copy)]
pub struct ContextWindow<'a> {
    /// Up to `w` turns before the target, oldest first, labelled or not.
    pub context: &'a [Utterance],
    /// The turn whose emotion is asked for.
    pub target: &'a Utterance,
    /// Index of the target in its dialogue.
    pub turn: usize,
}

impl<'a> ContextWindow<'a> {
    /// The window for turn `turn` of `dialogue` with at most `w` previous turns.
    ///
    /// Returns `None` when `turn` is past the end of the dialogue.
    pub fn new(dialogue: &'a Dialogue, turn: usize, w: usize) -> Option<Self> {
        let target = dialogue.utterances.get(turn)?;
        let start = turn.saturating_sub(w);
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
}
