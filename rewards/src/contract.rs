//! The output contract `<think>..</think><answer>l1, l2</answer>` and its parser.
//!
//! Well-formedness has the semantics of Python's
//! `re.fullmatch(r"<think>.*?</think>\s*<answer>.*?</answer>", s, re.DOTALL)`, the format
//! check of R1-V, R1-Omni and ERV: leading or trailing text makes a completion malformed, while
//! tags inside the think text are allowed. A malformed completion predicts the empty set.

use regex::Regex;
use selfemo_datasets::{Emotion, LabelSet};
use std::sync::LazyLock;

static CONTRACT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\A(?s)<think>(.*?)</think>\s*<answer>(.*?)</answer>\z").expect("valid regex"));

/// What a completion says, read against one dataset's label set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed {
    /// Whether the completion meets the contract (its shape; see [`Parsed::format_reward`]).
    pub well_formed: bool,
    /// The think text, when well formed.
    pub think: String,
    /// The raw answer text, when well formed.
    pub answer: String,
    /// Labels of the answer mapped to the dataset's set, duplicates removed, in order of first mention.
    pub labels: Vec<Emotion>,
    /// Answer items that are not labels of the set (reported, and counted as wrong by the rewards).
    pub invalid: Vec<String>,
}

impl Parsed {
    /// The prediction P as a set of labels.
    pub fn prediction(&self) -> &[Emotion] {
        &self.labels
    }

    /// The format reward: 1 for a completion that meets the contract and names at least one
    /// label of the set, else 0. A well-formed but empty (or all-invalid) answer earns nothing,
    /// so abstaining never pays.
    pub fn format_reward(&self) -> f64 {
        if self.well_formed && !self.labels.is_empty() { 1.0 } else { 0.0 }
    }

    /// The strict single-label answer evaluation scores: exactly one valid label, nothing
    /// invalid, a well-formed completion; anything else is `None` (counted wrong).
    pub fn strict_label(&self) -> Option<Emotion> {
        (self.well_formed && self.labels.len() == 1 && self.invalid.is_empty()).then(|| self.labels[0])
    }
}

/// Parses `completion` against `labels`; never panics, whatever the input.
pub fn parse(completion: &str, labels: &LabelSet) -> Parsed {
    let Some(caps) = CONTRACT.captures(completion) else {
        return Parsed::default();
    };
    let (think, answer) = (caps[1].to_string(), caps[2].to_string());
    let (labels, invalid) = parse_answer(&answer, labels);
    Parsed { well_formed: true, think, answer, labels, invalid }
}

/// Splits an answer on commas, semicolons and newlines and maps each item.
///
/// Returns (labels, invalid items); empty items are skipped, duplicates kept once.
pub fn parse_answer(answer: &str, set: &LabelSet) -> (Vec<Emotion>, Vec<String>) {
    let mut labels: Vec<Emotion> = Vec::new();
    let mut invalid: Vec<String> = Vec::new();
    for item in answer.split([',', ';', '\n']).map(str::trim).filter(|s| !s.is_empty()) {
        match set.parse(item) {
            Some(e) if !labels.contains(&e) => labels.push(e),
            Some(_) => {}
            None => {
                let item = item.to_string();
                if !invalid.contains(&item) {
                    invalid.push(item);
                }
            }
        }
    }
    (labels, invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfemo_datasets::labels::{EMORYNLP, MELD};

    fn names(p: &Parsed) -> Vec<&str> {
        p.labels.iter().map(|e| e.name()).collect()
    }

    #[test]
    fn a_well_formed_multi_label_answer() {
        let p = parse("<think>She shouts.\nShe is upset.</think>\n<answer>Anger, mad, disgust</answer>", &MELD);
        assert!(p.well_formed);
        assert_eq!(p.think, "She shouts.\nShe is upset.");
        assert_eq!(names(&p), ["anger", "disgust"], "mad is a synonym of anger: kept once");
        assert!(p.invalid.is_empty());
    }

    #[test]
    fn labels_map_to_the_datasets_spelling_and_unknowns_are_reported() {
        let p = parse("<think>x</think><answer>joy, boredom</answer>", &EMORYNLP);
        assert_eq!(names(&p), ["Joyful"]);
        assert_eq!(p.invalid, ["boredom"]);
    }

    #[test]
    fn malformed_outputs() {
        for bad in [
            "",
            "joy",
            "<answer>joy</answer>",                       // missing think
            "<think>x</think>",                           // missing answer
            "<think>x</think><answer>joy</answer> extra", // text after </answer>
            "Sure! <think>x</think><answer>joy</answer>", // text before <think>
            "<think>x</think> so <answer>joy</answer>",   // text between
            "<think>x<answer>joy</answer>",               // unclosed think
            "<think>x</think><answer>joy</answer>\n",     // trailing newline (fullmatch)
        ] {
            let p = parse(bad, &MELD);
            assert!(!p.well_formed, "{bad:?}");
            assert!(p.labels.is_empty(), "{bad:?}");
            assert_eq!(p.format_reward(), 0.0, "{bad:?}");
        }
    }

    #[test]
    fn regex_semantics_for_nested_tags_and_empty_answers() {
        // As re.fullmatch with lazy groups: the first </think> followed by <answer> that still
        // lets the match reach the end closes the think text.
        let p = parse("<think><think>a</think></think><answer>sad</answer>", &MELD);
        assert!(p.well_formed);
        assert_eq!(p.think, "<think>a</think>");
        assert_eq!(names(&p), ["sadness"]);

        let p = parse("<think>a</think><answer>joy</answer><answer>fear</answer>", &MELD);
        assert!(p.well_formed);
        assert_eq!(p.answer, "joy</answer><answer>fear");
        assert_eq!(p.invalid, ["joy</answer><answer>fear"]);

        let p = parse("<think></think>  \n <answer> </answer>", &MELD);
        assert!(p.well_formed && p.labels.is_empty() && p.invalid.is_empty());
        assert_eq!(p.format_reward(), 0.0, "a well-formed empty answer earns no format reward");
    }

    #[test]
    fn the_format_reward_needs_a_valid_label() {
        assert_eq!(parse("<think>x</think><answer>joy</answer>", &MELD).format_reward(), 1.0);
        assert_eq!(parse("<think>x</think><answer>joy, boredom</answer>", &MELD).format_reward(), 1.0);
        assert_eq!(parse("<think>x</think><answer>boredom</answer>", &MELD).format_reward(), 0.0);
        assert_eq!(parse("<think>x</think><answer></answer>", &MELD).format_reward(), 0.0);
    }
}
