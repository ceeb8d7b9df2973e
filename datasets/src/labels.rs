//! Emotion label sets, one per dataset, with case-insensitive synonyms.
//!
//! An [`Emotion`] is a label of one dataset's own set, spelt as that dataset spells it
//! (MELD `joy`, EmoryNLP `Joyful`, IEMOCAP `happy`). Parsing maps case and synonyms onto that
//! set; a word outside it is `None`, which a loader turns into an error and the reward parser
//! into an invalid label.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An emotion label, spelt as its dataset spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Emotion(&'static str);

impl Emotion {
    /// The label as the dataset spells it.
    pub fn name(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for Emotion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl Serialize for Emotion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

/// The ERC datasets selfemo knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Dataset {
    /// MELD (Poria et al., 2019): Friends, 7 Ekman-style labels.
    Meld,
    /// EmoryNLP (Zahiri & Choi, 2018): Friends, 7 Feeling-Wheel labels.
    Emorynlp,
    /// IEMOCAP (Busso et al., 2008): 6 classes, happy and excited not merged.
    Iemocap,
}

impl Dataset {
    /// Every dataset, in a fixed order.
    pub const ALL: [Dataset; 3] = [Dataset::Meld, Dataset::Emorynlp, Dataset::Iemocap];

    /// The dataset's name as used on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            Dataset::Meld => "meld",
            Dataset::Emorynlp => "emorynlp",
            Dataset::Iemocap => "iemocap",
        }
    }

    /// Parses a dataset name (case-insensitive).
    pub fn from_name(name: &str) -> Option<Dataset> {
        Dataset::ALL.into_iter().find(|d| d.name().eq_ignore_ascii_case(name.trim()))
    }

    /// The dataset's label set.
    pub fn labels(self) -> &'static LabelSet {
        match self {
            Dataset::Meld => &MELD,
            Dataset::Emorynlp => &EMORYNLP,
            Dataset::Iemocap => &IEMOCAP,
        }
    }
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a text names an emotion ([`LabelSet::mention_in`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mention {
    /// The label's own name, as a whole word.
    Label(Emotion),
    /// A synonym of the label, as a whole word.
    Synonym(Emotion),
}

/// One dataset's labels and the synonyms that map onto them.
#[derive(Debug)]
pub struct LabelSet {
    /// Canonical labels, in the dataset's usual order (neutral first).
    labels: &'static [&'static str],
    /// (lower-case synonym, canonical label) pairs; every canonical label also matches itself.
    synonyms: &'static [(&'static str, &'static str)],
}

impl LabelSet {
    /// The canonical labels in a fixed order.
    pub fn emotions(&self) -> impl ExactSizeIterator<Item = Emotion> + '_ {
        self.labels.iter().map(|l| Emotion(l))
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Always false: every set has labels.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The label at `i` in [`LabelSet::emotions`].
    pub fn get(&self, i: usize) -> Option<Emotion> {
        self.labels.get(i).map(|l| Emotion(l))
    }

    /// Where `e` stands in [`LabelSet::emotions`]; `None` for another dataset's label.
    pub fn index(&self, e: Emotion) -> Option<usize> {
        self.labels.iter().position(|l| *l == e.0)
    }

    /// Maps a word (any case, surrounding space and punctuation ignored) to this set's label.
    pub fn parse(&self, word: &str) -> Option<Emotion> {
        let w = word.trim().trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase();
        if w.is_empty() {
            return None;
        }
        if let Some(l) = self.labels.iter().find(|l| l.to_lowercase() == w) {
            return Some(Emotion(l));
        }
        self.synonyms.iter().find(|(s, _)| *s == w).map(|(_, l)| Emotion(l))
    }

    /// How `text` names an emotion of this set, if it does: a label itself (`joy`) as a whole
    /// word in any case, else one of its synonyms (`happy`). Words are the runs of letters and
    /// digits, so `Joy!` and `(anger)` count and `enjoyed` does not.
    pub fn mention_in(&self, text: &str) -> Option<Mention> {
        let words: Vec<String> = text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect();
        let label = self.labels.iter().find(|l| words.iter().any(|w| *w == l.to_lowercase()));
        if let Some(l) = label {
            return Some(Mention::Label(Emotion(l)));
        }
        let synonym = self.synonyms.iter().find(|(s, _)| words.iter().any(|w| w == s));
        synonym.map(|(_, l)| Mention::Synonym(Emotion(l)))
    }

    /// The label with the highest score, `scores` in [`LabelSet::emotions`] order (ties: the
    /// first; `None` for no scores).
    pub fn argmax(&self, scores: &[f64]) -> Option<Emotion> {
        let best = (0..scores.len()).max_by(|a, b| scores[*a].total_cmp(&scores[*b]).then(b.cmp(a)));
        best.and_then(|k| self.get(k))
    }

    /// The labels joined for a prompt, e.g. `neutral, surprise, fear`.
    pub fn joined(&self) -> String {
        self.labels.join(", ")
    }
}

/// MELD's 7 labels.
pub static MELD: LabelSet = LabelSet {
    labels: &["neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger"],
    synonyms: &[
        ("neu", "neutral"),
        ("surprised", "surprise"),
        ("scared", "fear"),
        ("afraid", "fear"),
        ("fearful", "fear"),
        ("sad", "sadness"),
        ("joyful", "joy"),
        ("happy", "joy"),
        ("happiness", "joy"),
        ("disgusted", "disgust"),
        ("angry", "anger"),
        ("mad", "anger"),
    ],
};

/// EmoryNLP's 7 Feeling-Wheel labels.
pub static EMORYNLP: LabelSet = LabelSet {
    labels: &["Neutral", "Joyful", "Peaceful", "Powerful", "Scared", "Mad", "Sad"],
    synonyms: &[
        ("joy", "Joyful"),
        ("happy", "Joyful"),
        ("happiness", "Joyful"),
        ("calm", "Peaceful"),
        ("confident", "Powerful"),
        ("fear", "Scared"),
        ("afraid", "Scared"),
        ("fearful", "Scared"),
        ("angry", "Mad"),
        ("anger", "Mad"),
        ("sadness", "Sad"),
    ],
};

/// IEMOCAP's 6 classes (happy and excited kept apart, as DialogueRNN through InstructERC).
pub static IEMOCAP: LabelSet = LabelSet {
    labels: &["neutral", "happy", "sad", "angry", "excited", "frustrated"],
    synonyms: &[
        ("joy", "happy"),
        ("joyful", "happy"),
        ("happiness", "happy"),
        ("sadness", "sad"),
        ("anger", "angry"),
        ("mad", "angry"),
        ("excitement", "excited"),
        ("frustration", "frustrated"),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synonyms_map_to_each_datasets_own_spelling() {
        assert_eq!(MELD.parse("Joyful").unwrap().name(), "joy");
        assert_eq!(EMORYNLP.parse("joy").unwrap().name(), "Joyful");
        assert_eq!(IEMOCAP.parse("HAPPINESS").unwrap().name(), "happy");
        assert_eq!(MELD.parse(" mad. ").unwrap().name(), "anger");
        assert_eq!(EMORYNLP.parse("angry").unwrap().name(), "Mad");
        assert_eq!(IEMOCAP.parse("sadness").unwrap().name(), "sad");
        assert_eq!(MELD.parse("sad").unwrap().name(), "sadness");
    }

    #[test]
    fn index_inverts_get_and_rejects_other_sets_labels() {
        for set in [&MELD, &EMORYNLP, &IEMOCAP] {
            for (i, e) in set.emotions().enumerate() {
                assert_eq!(set.index(e), Some(i));
                assert_eq!(set.get(i), Some(e));
            }
        }
        assert_eq!(MELD.index(EMORYNLP.parse("Joyful").unwrap()), None);
        assert_eq!(EMORYNLP.index(MELD.parse("anger").unwrap()), None);
    }

    #[test]
    fn words_outside_the_set_are_rejected() {
        assert_eq!(MELD.parse("excited"), None);
        assert_eq!(EMORYNLP.parse("disgust"), None);
        assert_eq!(IEMOCAP.parse("surprise"), None);
        assert_eq!(MELD.parse(""), None);
    }

    #[test]
    fn mentions_are_whole_words_in_any_case_labels_before_synonyms() {
        let joy = MELD.parse("joy").unwrap();
        assert_eq!(MELD.mention_in("Oh, JOY! What a day."), Some(Mention::Label(joy)));
        assert_eq!(MELD.mention_in("I'm so happy for you"), Some(Mention::Synonym(joy)));
        assert_eq!(MELD.mention_in("I'm happy, and that's anger talking"), Some(Mention::Label(MELD.parse("anger").unwrap())));
        assert_eq!(MELD.mention_in("We enjoyed the overjoyed madness"), None, "parts of words are not mentions");
        assert_eq!(MELD.mention_in("Neutral ground."), Some(Mention::Label(MELD.parse("neutral").unwrap())));
        assert_eq!(EMORYNLP.mention_in("you're mad"), Some(Mention::Label(EMORYNLP.parse("Mad").unwrap())));
        assert_eq!(EMORYNLP.mention_in("so much joy"), Some(Mention::Synonym(EMORYNLP.parse("Joyful").unwrap())));
        assert_eq!(MELD.mention_in(""), None);
    }

    #[test]
    fn argmax_takes_the_first_of_equal_scores() {
        assert_eq!(MELD.argmax(&[-2.0, -1.0, -3.0, -1.0]).unwrap().name(), "surprise");
        assert_eq!(MELD.argmax(&[-1.0; 7]).unwrap().name(), "neutral");
        assert_eq!(MELD.argmax(&[]), None);
    }

    #[test]
    fn every_synonym_points_into_its_set() {
        for d in Dataset::ALL {
            let set = d.labels();
            for (s, l) in set.synonyms {
                assert!(set.labels.contains(l), "{d}: {s} -> {l}");
                assert_eq!(s.to_lowercase(), *s);
            }
            for e in set.emotions() {
                assert_eq!(set.parse(&e.name().to_uppercase()), Some(e));
            }
        }
    }
}
