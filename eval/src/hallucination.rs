//! The emotion-hallucination probe (EmotionHallucer seed): for each target two yes/no questions,
//! "does the speaker feel X?" with X = gold (expect yes) and X = a confusable label (expect no),
//! answered in score mode (the higher of log π(Yes) and log π(No) after the question).

use crate::label_scoring::{ScoreLimits, ScorePrompt, layout};
use selfemo_datasets::{Corpus, Dataset, Emotion, Target};
use selfemo_model::label_scores::{HeaderCache, ScoreQuery, score_dialogue};
use selfemo_model::{CausalLm, Message, TextTokenizer};
use serde::Serialize;

/// The confusable partner of each label, per dataset [RECON]: the neighbour on the
/// valence-arousal circumplex that ERC confusion matrices most often mix it with
/// (frustrated/angry, excited/happy, Peaceful/Neutral, Powerful/Joyful, ...).
pub fn confusable(dataset: Dataset, gold: &str) -> Option<&'static str> {
    let table: &[(&str, &str)] = match dataset {
        Dataset::Meld => &[
            ("neutral", "surprise"),
            ("surprise", "joy"),
            ("fear", "surprise"),
            ("sadness", "fear"),
            ("joy", "surprise"),
            ("disgust", "anger"),
            ("anger", "disgust"),
        ],
        Dataset::Emorynlp => &[
            ("Neutral", "Peaceful"),
            ("Joyful", "Powerful"),
            ("Peaceful", "Neutral"),
            ("Powerful", "Joyful"),
            ("Scared", "Sad"),
            ("Mad", "Scared"),
            ("Sad", "Scared"),
        ],
        Dataset::Iemocap => {
            &[("neutral", "sad"), ("happy", "excited"), ("sad", "neutral"), ("angry", "frustrated"), ("excited", "happy"), ("frustrated", "angry")]
        }
    };
    table.iter().find(|(g, _)| *g == gold).map(|(_, c)| *c)
}

/// The probe's question, after the conversation's lines.
pub const QUESTION: &str = "\nDoes {speaker} feel {emotion} in the last line? Answer Yes or No.";

/// Answers to the two questions of one target: `true` = yes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairAnswer {
    /// Asked about the gold label (correct: yes).
    pub gold: bool,
    /// Asked about the confusable label (correct: no).
    pub confusable: bool,
}

/// The probe's scores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HallucinationReport {
    /// Targets probed.
    pub pairs: usize,
    /// Share of gold questions answered yes.
    pub basic_accuracy: f64,
    /// Share of confusable questions answered no.
    pub hallucinated_accuracy: f64,
    /// Share of targets with both right.
    pub pair_accuracy: f64,
    /// Yes-bias d_y: share of yes answers over all questions minus 0.5 (the balanced rate).
    pub yes_bias: f64,
    /// r_fp: share of the yes answers that were wrong (yes to the confusable label).
    pub false_positive_ratio: f64,
}

/// Scores the answers.
pub fn report(answers: &[PairAnswer]) -> HallucinationReport {
    let n = answers.len().max(1) as f64;
    let share = |f: &dyn Fn(&PairAnswer) -> bool| answers.iter().filter(|a| f(a)).count() as f64 / n;
    let yes = answers.iter().map(|a| a.gold as usize + a.confusable as usize).sum::<usize>();
    let false_yes = answers.iter().filter(|a| a.confusable).count();
    HallucinationReport {
        pairs: answers.len(),
        basic_accuracy: share(&|a| a.gold),
        hallucinated_accuracy: share(&|a| !a.confusable),
        pair_accuracy: share(&|a| a.gold && !a.confusable),
        yes_bias: yes as f64 / (2.0 * n) - 0.5,
        false_positive_ratio: if yes == 0 { 0.0 } else { false_yes as f64 / yes as f64 },
    }
}

/// Asks both questions for every target (targets of one dialogue share its prefix) and returns
/// the answers in `targets` order. Targets whose gold has no confusable partner are skipped.
pub fn probe(
    model: &CausalLm,
    tok: &TextTokenizer,
    corpus: &Corpus,
    targets: &[Target],
    limits: ScoreLimits,
    progress: &mut dyn FnMut(usize),
) -> Vec<PairAnswer> {
    let ScoreLimits { window, budget, rows } = limits;
    let prompt = ScorePrompt { question: QUESTION.into(), answer_prefix: String::new(), ..ScorePrompt::default() };
    let yes_no = [tok.encode("Yes"), tok.encode("No")];
    let mut out = Vec::with_capacity(targets.len());
    let mut headers = HeaderCache::default();
    for same in targets.chunk_by(|a, b| a.dialogue == b.dialogue) {
        let d = same[0].dialogue;
        let golds: Vec<(usize, Emotion, &str)> = same
            .iter()
            .filter_map(|t| {
                let gold = corpus.dialogues[d].utterances[t.turn].label?;
                Some((t.turn, gold, confusable(corpus.dataset, gold.name())?))
            })
            .collect();
        let turns: Vec<usize> = golds.iter().map(|g| g.0).collect();
        let (mut lay, planned) = layout(tok, &prompt, corpus, d, &turns, window, budget);
        lay.labels = yes_no.to_vec();
        // two queries per target, same window, the question naming gold then the confusable label
        let queries: Vec<ScoreQuery> = planned
            .iter()
            .zip(&golds)
            .flat_map(|(q, (_, gold, other))| {
                let speaker = &corpus.dialogues[d].utterances[q.turn].speaker;
                [gold.name(), *other].map(|e| ScoreQuery { turn: q.turn, start: q.start, suffix: suffix(tok, &prompt, speaker, e) })
            })
            .collect();
        let scores = score_dialogue(model, &lay, &queries, headers.get(model, &lay.header), rows);
        out.extend(scores.chunks(2).map(|pair| PairAnswer { gold: pair[0][0] > pair[0][1], confusable: pair[1][0] > pair[1][1] }));
        progress(same.len());
    }
    out
}

/// The tokens after a target's line: the question about `emotion`, the end of the user turn and
/// the start of the assistant's.
fn suffix(tok: &TextTokenizer, prompt: &ScorePrompt, speaker: &str, emotion: &str) -> Vec<u32> {
    const CUT: &str = "\u{1}";
    let question = QUESTION.replace("{speaker}", speaker).replace("{emotion}", emotion);
    let chat = tok.chat_prompt(&[Message::new("system", "x"), Message::new("user", format!("{CUT}{question}"))]) + &prompt.answer_prefix;
    tok.encode(chat.split(CUT).nth(1).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_has_a_different_confusable_label_of_its_own_set() {
        for d in [Dataset::Meld, Dataset::Emorynlp, Dataset::Iemocap] {
            for e in d.labels().emotions() {
                let c = confusable(d, e.name()).unwrap_or_else(|| panic!("{d}: no partner for {e}"));
                assert!(c != e.name() && d.labels().emotions().any(|x| x.name() == c), "{d}: {e} -> {c}");
            }
        }
    }

    #[test]
    fn scores_by_hand() {
        let a = |gold, confusable| PairAnswer { gold, confusable };
        // 4 pairs: yes/no (both right), yes/yes (hallucinated), no/no, no/yes
        let r = report(&[a(true, false), a(true, true), a(false, false), a(false, true)]);
        assert_eq!((r.basic_accuracy, r.hallucinated_accuracy, r.pair_accuracy), (0.5, 0.5, 0.25));
        assert_eq!(r.yes_bias, 0.0, "4 yes of 8");
        assert_eq!(r.false_positive_ratio, 0.5, "2 of the 4 yes answers were to the confusable label");
        let always_yes = report(&[a(true, true), a(true, true)]);
        assert_eq!((always_yes.yes_bias, always_yes.false_positive_ratio, always_yes.pair_accuracy), (0.5, 0.5, 0.0));
    }
}
