//! What each role works on: a recognition item (turns ending in the target, and its gold set)
//! and an expression item (the conversation so far, the next speaker and the emotion e* to
//! express). Items own their turns, so synthetic turns from the flywheel are items too.

use crate::policy::splitmix;
use selfemo_datasets::{ContextSpan, ContextWindow, Corpus, Emotion, Split, Target, Utterance};
use serde::{Deserialize, Serialize};

/// Where a target comes from, stable across runs: `dataset/split/dialogue id/turn`.
pub fn source_name(corpus: &Corpus, target: Target) -> String {
    let d = &corpus.dialogues[target.dialogue];
    format!("{}/{}/{}/{}", corpus.dataset.name(), d.split.name(), d.id, target.turn)
}

/// A target turn to recognise, with the turns before it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecognitionItem {
    /// Seeds and logs refer to it; unique within a run.
    pub id: u64,
    /// The source utterance ([`source_name`]); a synthetic item names the turn it answered.
    pub source: String,
    /// Context turns, oldest first, then the target u_t.
    pub turns: Vec<Utterance>,
    /// Gold set G = {y_t} (for a synthetic turn: the e* it was written to express).
    pub gold: Emotion,
    /// Whether the target turn was written by the policy (a flywheel sample).
    pub synthetic: bool,
}

impl RecognitionItem {
    /// The item of a labelled corpus target with the context turns `span` shows (a number is a
    /// sliding window of that many).
    pub fn from_target(corpus: &Corpus, target: Target, span: impl Into<ContextSpan>, id: u64) -> Option<Self> {
        let window = ContextWindow::new(&corpus.dialogues[target.dialogue], target.turn, span)?;
        Some(Self {
            id,
            source: source_name(corpus, target),
            turns: window.context.iter().chain([window.target]).cloned().collect(),
            gold: window.target.label?,
            synthetic: false,
        })
    }

    /// The context-window view the recogniser prompt is filled from.
    pub fn window(&self) -> ContextWindow<'_> {
        let n = self.turns.len() - 1;
        ContextWindow { context: &self.turns[..n], target: &self.turns[n], turn: n }
    }
}

/// Where the responder's target emotion e* comes from [RECON: the paper does not say].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetEmotion {
    /// The gold label of the next turn u_{t+1} (a label drawn uniformly when there is none):
    /// e* follows the corpus, so it is as often neutral as the data is.
    #[default]
    NextTurn,
    /// A label drawn uniformly: every emotion is practised equally.
    Uniform,
    /// A label drawn with probability ∝ 1 / (its train count): rare emotions most.
    InverseFrequency,
}

/// How e* is drawn for a corpus: the rule and the train split's label weights it draws with.
#[derive(Debug, Clone, PartialEq)]
pub struct EmotionDraw {
    rule: TargetEmotion,
    /// Per label of the set, in order: its draw weight.
    weights: Vec<f64>,
}

impl EmotionDraw {
    /// The draw of `rule` over `corpus`'s label set (inverse frequency from its train split).
    pub fn new(rule: TargetEmotion, corpus: &Corpus) -> Self {
        let labels = corpus.dataset.labels();
        let weights = match rule {
            TargetEmotion::InverseFrequency => {
                let mut counts = vec![0usize; labels.len()];
                for t in corpus.targets(Split::Train) {
                    let l = corpus.dialogues[t.dialogue].utterances[t.turn].label.expect("targets are labelled");
                    counts[labels.emotions().position(|e| e == l).expect("a label of the set")] += 1;
                }
                counts.iter().map(|c| 1.0 / (*c).max(1) as f64).collect()
            }
            _ => vec![1.0; labels.len()],
        };
        Self { rule, weights }
    }

    /// e* for the turn after `source`: the next turn's label when the rule says so and there
    /// is one, else a draw by the weights from a hash of `seed` and `source` (the same run
    /// draws the same e*).
    fn pick(&self, corpus: &Corpus, next: Option<Emotion>, source: &str, seed: u64) -> Emotion {
        if let (TargetEmotion::NextTurn, Some(e)) = (self.rule, next) {
            return e;
        }
        let h = source.bytes().fold(splitmix(seed), |h, b| splitmix(h ^ u64::from(b)));
        let total: f64 = self.weights.iter().sum();
        let mut u = (h >> 11) as f64 / (1u64 << 53) as f64 * total;
        let labels = corpus.dataset.labels();
        let k = self.weights.iter().position(|w| {
            u -= w;
            u < 0.0
        });
        labels.get(k.unwrap_or(labels.len() - 1)).expect("label sets are not empty")
    }
}

/// A turn to answer: the responder writes the next line as `speaker`, expressing `emotion`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpressionItem {
    /// Seeds and logs refer to it; unique within a run.
    pub id: u64,
    /// The source utterance u_t ([`source_name`]).
    pub source: String,
    /// The conversation so far, u_{t-w..t}.
    pub turns: Vec<Utterance>,
    /// The next speaker s_{t+1}.
    pub speaker: String,
    /// e*, drawn by the run's [`EmotionDraw`].
    pub emotion: Emotion,
}

impl ExpressionItem {
    /// The item answering corpus turn `target` with at most `w` earlier turns. The next speaker
    /// is s_{t+1}, else the latest other speaker, else s_t; e* comes from `draw`.
    pub fn from_target(corpus: &Corpus, target: Target, w: usize, id: u64, seed: u64, draw: &EmotionDraw) -> Option<Self> {
        let dialogue = &corpus.dialogues[target.dialogue];
        let window = ContextWindow::new(dialogue, target.turn, w)?;
        let turns: Vec<Utterance> = window.context.iter().chain([window.target]).cloned().collect();
        let next = dialogue.utterances.get(target.turn + 1);
        let speaker = next.map(|u| u.speaker.clone()).unwrap_or_else(|| {
            let other = turns.iter().rev().find(|u| u.speaker != window.target.speaker);
            other.unwrap_or(window.target).speaker.clone()
        });
        let source = source_name(corpus, target);
        let emotion = draw.pick(corpus, next.and_then(|u| u.label), &source, seed);
        Some(Self { id, source, turns, speaker, emotion })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfemo_datasets::{Dataset, Dialogue, Split};

    fn corpus() -> Corpus {
        let meld = Dataset::Meld.labels();
        let u = |s: &str, t: &str, l: Option<&str>| Utterance { speaker: s.into(), text: t.into(), label: l.and_then(|l| meld.parse(l)) };
        let d = Dialogue {
            id: "7".into(),
            split: Split::Train,
            utterances: vec![u("A", "hi", Some("neutral")), u("B", "yay", Some("joy")), u("A", "ugh", Some("disgust"))],
        };
        Corpus { dataset: Dataset::Meld, dialogues: vec![d] }
    }

    #[test]
    fn recognition_item_holds_the_window_and_gold() {
        let c = corpus();
        let item = RecognitionItem::from_target(&c, Target { dialogue: 0, turn: 2 }, 1, 5).unwrap();
        assert_eq!(item.source, "meld/train/7/2");
        assert_eq!(item.turns.iter().map(|u| u.text.as_str()).collect::<Vec<_>>(), ["yay", "ugh"]);
        assert_eq!(item.gold.name(), "disgust");
        assert_eq!(item.window().target.text, "ugh");
        assert_eq!(item.window().context.len(), 1);
    }

    #[test]
    fn expression_item_targets_the_next_turn_or_a_seeded_draw() {
        let c = corpus();
        let draw = EmotionDraw::new(TargetEmotion::NextTurn, &c);
        let mid = ExpressionItem::from_target(&c, Target { dialogue: 0, turn: 1 }, 5, 0, 0, &draw).unwrap();
        assert_eq!((mid.speaker.as_str(), mid.emotion.name()), ("A", "disgust"));
        assert_eq!(mid.turns.len(), 2);
        let last = ExpressionItem::from_target(&c, Target { dialogue: 0, turn: 2 }, 5, 0, 0, &draw).unwrap();
        assert_eq!(last.speaker, "B", "the latest other speaker answers the last turn");
        let renumbered = ExpressionItem::from_target(&c, Target { dialogue: 0, turn: 2 }, 5, 99, 0, &draw).unwrap();
        assert_eq!((renumbered.id, renumbered.emotion), (99, last.emotion), "the draw depends on the run seed and the source, not on the item's id");
        let draws: std::collections::BTreeSet<&str> =
            (0..40).map(|s| ExpressionItem::from_target(&c, Target { dialogue: 0, turn: 2 }, 5, 0, s, &draw).unwrap().emotion.name()).collect();
        assert!(draws.len() >= 4, "seeds draw different labels: {draws:?}");
    }

    #[test]
    fn uniform_and_inverse_frequency_draws_follow_their_weights() {
        // MELD train: neutral 4710 of 9989, fear 268.
        let meld = selfemo_datasets::load(selfemo_datasets::Dataset::Meld, None).unwrap();
        let target = meld.targets(Split::Train)[0];
        let share = |rule, label: &str| {
            let draw = EmotionDraw::new(rule, &meld);
            let n = 7000;
            let hits = (0..n).filter(|s| ExpressionItem::from_target(&meld, target, 3, 0, *s, &draw).unwrap().emotion.name() == label).count();
            hits as f64 / n as f64
        };
        assert!((share(TargetEmotion::Uniform, "neutral") - 1.0 / 7.0).abs() < 0.015);
        assert!((share(TargetEmotion::Uniform, "fear") - 1.0 / 7.0).abs() < 0.015);
        assert!(share(TargetEmotion::InverseFrequency, "neutral") < 0.02, "the majority is drawn least");
        assert!(share(TargetEmotion::InverseFrequency, "fear") > 0.25, "fear, the rarest, most");
        // the next turn's label is ignored by these rules
        assert_ne!(share(TargetEmotion::Uniform, "joy"), 0.0);
    }
}
