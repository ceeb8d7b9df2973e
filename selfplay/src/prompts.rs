//! Role prompts. The recogniser reads a context window and names the target turn's emotion
//! under the output contract; the responder writes the next turn as the next speaker,
//! expressing a target emotion e*. Templates live in config with these defaults; `{labels}`,
//! `{context}`, `{speaker}`, `{target}` and `{emotion}` are filled in.

use crate::policy::splitmix;
use selfemo_datasets::{ContextWindow, Emotion, LabelSet, Utterance};
use serde::{Deserialize, Serialize};

/// The recogniser's templates and the start of its reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecogniserPrompt {
    /// System message.
    pub system: String,
    /// User message.
    pub user: String,
    /// Text the assistant reply starts with, placed in the prompt (default `<think>`): the
    /// policy continues the contract instead of having to open it. Parsing puts it back.
    pub reply_prefix: String,
    /// List `{labels}` in an order shuffled per target (seeded by the target turn), so no label
    /// gains from always being named first (default false: the dataset's order, neutral first)
    /// [RECON].
    pub shuffle_labels: bool,
}

impl Default for RecogniserPrompt {
    fn default() -> Self {
        Self {
            system: "You recognise emotions in conversations. Think briefly inside <think></think>, then give the emotion of the \
                     last line inside <answer></answer>, using only these labels: {labels}."
                .into(),
            user: "Conversation:\n{context}\n\nWhich emotion does {speaker} express in the last line, \"{target}\"? \
                   Choose from: {labels}."
                .into(),
            reply_prefix: "<think>".into(),
            shuffle_labels: false,
        }
    }
}

/// The labels in an order drawn from `key` (Fisher–Yates on a SplitMix64 stream): the same key
/// gives the same order.
fn shuffled_labels(labels: &LabelSet, key: &str) -> String {
    let mut names: Vec<&str> = labels.emotions().map(|e| e.name()).collect();
    let mut h = key.bytes().fold(splitmix(0x5EED), |h, b| splitmix(h ^ u64::from(b)));
    for i in (1..names.len()).rev() {
        h = splitmix(h);
        names.swap(i, (h % (i as u64 + 1)) as usize);
    }
    names.join(", ")
}

/// A filled prompt: system and user text, and the reply prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilledPrompt {
    /// System message.
    pub system: String,
    /// User message.
    pub user: String,
    /// Start of the assistant reply.
    pub reply_prefix: String,
}

/// `speaker: text` lines, one per turn.
fn lines<'a>(turns: impl Iterator<Item = &'a Utterance>) -> String {
    turns.map(|u| format!("{}: {}", u.speaker, u.text)).collect::<Vec<_>>().join("\n")
}

/// The largest fill of `fill(keep)` (keep = how many of the `n` droppable oldest turns stay)
/// that fits `budget` tokens under `count`; with none kept it is returned even if too long.
fn fit_dropping_oldest(n: usize, budget: usize, count: &dyn Fn(&FilledPrompt) -> usize, fill: impl Fn(usize) -> FilledPrompt) -> FilledPrompt {
    let mut keep = n;
    loop {
        let p = fill(keep);
        if keep == 0 || count(&p) <= budget {
            return p;
        }
        keep -= 1;
    }
}

impl RecogniserPrompt {
    /// Fills the templates for a window.
    pub fn fill(&self, window: &ContextWindow<'_>, labels: &LabelSet) -> FilledPrompt {
        let lines = lines(window.context.iter().chain([window.target]));
        let label_list =
            if self.shuffle_labels { shuffled_labels(labels, &format!("{}: {}", window.target.speaker, window.target.text)) } else { labels.joined() };
        let fill = |t: &str| {
            t.replace("{labels}", &label_list)
                .replace("{context}", &lines)
                .replace("{speaker}", &window.target.speaker)
                .replace("{target}", &window.target.text)
        };
        FilledPrompt { system: fill(&self.system), user: fill(&self.user), reply_prefix: self.reply_prefix.clone() }
    }

    /// Fills the prompt with as much context as fits `budget` tokens, dropping the oldest
    /// turns first and never the target; `count` measures a filled prompt in tokens.
    pub fn fit(&self, window: ContextWindow<'_>, labels: &LabelSet, budget: usize, count: &dyn Fn(&FilledPrompt) -> usize) -> FilledPrompt {
        fit_dropping_oldest(window.context.len(), budget, count, |keep| self.fill(&window.keep_last(keep), labels))
    }
}

/// The responder's templates: it writes the next turn of the conversation as `{speaker}`,
/// expressing `{emotion}` (e*). The completion is the turn itself, plain text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponderPrompt {
    /// System message.
    pub system: String,
    /// User message.
    pub user: String,
    /// Text the reply starts with (default empty).
    pub reply_prefix: String,
}

impl Default for ResponderPrompt {
    fn default() -> Self {
        Self {
            system: "You continue conversations. Write only the next line, one short sentence, in the speaker's voice.".into(),
            user: "Conversation:\n{context}\n\nWrite {speaker}'s next line so that it expresses {emotion}.".into(),
            reply_prefix: String::new(),
        }
    }
}

impl ResponderPrompt {
    /// Fills the templates: `turns` is the conversation so far (u_{t-w..t}), `speaker` the next
    /// speaker s_{t+1}, `emotion` the target e*.
    pub fn fill(&self, turns: &[Utterance], speaker: &str, emotion: Emotion, labels: &LabelSet) -> FilledPrompt {
        let lines = lines(turns.iter());
        let fill =
            |t: &str| t.replace("{labels}", &labels.joined()).replace("{context}", &lines).replace("{speaker}", speaker).replace("{emotion}", emotion.name());
        FilledPrompt { system: fill(&self.system), user: fill(&self.user), reply_prefix: self.reply_prefix.clone() }
    }

    /// Fills the prompt within `budget` tokens, dropping the oldest turns first and never the
    /// last one (u_t, the turn being answered).
    pub fn fit(
        &self,
        turns: &[Utterance],
        speaker: &str,
        emotion: Emotion,
        labels: &LabelSet,
        budget: usize,
        count: &dyn Fn(&FilledPrompt) -> usize,
    ) -> FilledPrompt {
        let n = turns.len().saturating_sub(1);
        fit_dropping_oldest(n, budget, count, |keep| self.fill(&turns[n - keep..], speaker, emotion, labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfemo_datasets::{Dataset, Dialogue, Split, Utterance};

    fn dialogue() -> Dialogue {
        let u = |s: &str, t: &str| Utterance { speaker: s.into(), text: t.into(), label: None };
        Dialogue { id: "0".into(), split: Split::Dev, utterances: vec![u("Ross", "Hi."), u("Rachel", "Oh, hey!"), u("Ross", "I got the job!")] }
    }

    #[test]
    fn fills_labels_context_and_target() {
        let d = dialogue();
        let w = ContextWindow::new(&d, 2, 20).unwrap();
        let p = RecogniserPrompt::default().fill(&w, Dataset::Meld.labels());
        assert!(p.user.starts_with("Conversation:\nRoss: Hi.\nRachel: Oh, hey!\nRoss: I got the job!\n"));
        assert!(p.user.contains("Which emotion does Ross express in the last line, \"I got the job!\"?"));
        assert!(p.system.contains("neutral, surprise, fear, sadness, joy, disgust, anger"));
        assert_eq!(p.reply_prefix, "<think>");
    }

    #[test]
    fn shuffled_labels_vary_by_target_and_repeat_for_the_same_one() {
        let d = dialogue();
        let t = RecogniserPrompt { shuffle_labels: true, ..RecogniserPrompt::default() };
        let listed = |turn: usize| {
            let p = t.fill(&ContextWindow::new(&d, turn, 20).unwrap(), Dataset::Meld.labels());
            let list = p.system.rsplit("labels: ").next().unwrap().trim_end_matches('.').to_string();
            assert!(p.user.ends_with(&format!("Choose from: {list}.")), "one order per prompt: {}", p.user);
            list
        };
        let orders: std::collections::BTreeSet<String> = (0..3).map(listed).collect();
        assert_eq!(listed(1), listed(1));
        assert!(orders.len() > 1, "targets see different orders: {orders:?}");
        for o in &orders {
            let mut names: Vec<&str> = o.split(", ").collect();
            names.sort();
            assert_eq!(names, ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]);
        }
    }

    #[test]
    fn truncation_drops_the_oldest_turns_first_and_never_the_target() {
        let d = dialogue();
        let w = ContextWindow::new(&d, 2, 20).unwrap();
        let words = |p: &FilledPrompt| p.user.split_whitespace().count();
        let full = words(&RecogniserPrompt::default().fill(&w, Dataset::Meld.labels()));
        let p = RecogniserPrompt::default().fit(w, Dataset::Meld.labels(), full - 1, &words);
        assert!(!p.user.contains("Ross: Hi.") && p.user.contains("Rachel: Oh, hey!"));
        let p = RecogniserPrompt::default().fit(w, Dataset::Meld.labels(), 1, &words);
        assert!(p.user.starts_with("Conversation:\nRoss: I got the job!"), "the target always stays");
    }

    #[test]
    fn responder_names_the_next_speaker_and_emotion_and_keeps_the_last_turn() {
        let d = dialogue();
        let joy = Dataset::Meld.labels().parse("joy").unwrap();
        let r = ResponderPrompt::default();
        let p = r.fill(&d.utterances, "Rachel", joy, Dataset::Meld.labels());
        assert!(p.user.contains("Ross: Hi.\nRachel: Oh, hey!\nRoss: I got the job!"));
        assert!(p.user.contains("Write Rachel's next line so that it expresses joy."));
        let words = |p: &FilledPrompt| p.user.split_whitespace().count();
        let p = r.fit(&d.utterances, "Rachel", joy, Dataset::Meld.labels(), 1, &words);
        assert!(p.user.starts_with("Conversation:\nRoss: I got the job!\n"), "{}", p.user);
    }
}
