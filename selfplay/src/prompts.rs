//! Role prompts. The recogniser reads a context window and names the target turn's emotion
//! under the output contract. Templates live in config with these defaults; `{labels}`,
//! `{context}`, `{speaker}` and `{target}` are filled in.

use selfemo_datasets::{ContextWindow, LabelSet};
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
        }
    }
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

impl RecogniserPrompt {
    /// Fills the templates for a window.
    pub fn fill(&self, window: &ContextWindow<'_>, labels: &LabelSet) -> FilledPrompt {
        let mut lines: Vec<String> = window.context.iter().map(|u| format!("{}: {}", u.speaker, u.text)).collect();
        lines.push(format!("{}: {}", window.target.speaker, window.target.text));
        let fill = |t: &str| {
            t.replace("{labels}", &labels.joined())
                .replace("{context}", &lines.join("\n"))
                .replace("{speaker}", &window.target.speaker)
                .replace("{target}", &window.target.text)
        };
        FilledPrompt { system: fill(&self.system), user: fill(&self.user), reply_prefix: self.reply_prefix.clone() }
    }

    /// Fills the prompt with as much context as fits `budget` tokens, dropping the oldest
    /// turns first and never the target; `count` measures a filled prompt in tokens.
    pub fn fit(&self, window: ContextWindow<'_>, labels: &LabelSet, budget: usize, count: &dyn Fn(&FilledPrompt) -> usize) -> FilledPrompt {
        let mut keep = window.context.len();
        loop {
            let p = self.fill(&window.keep_last(keep), labels);
            if keep == 0 || count(&p) <= budget {
                return p;
            }
            keep -= 1;
        }
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
}
