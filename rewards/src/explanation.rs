//! The explanation reward of the Emotional Rationale Verifier (ERV; Rha et al., arXiv 2510.23506).
//!
//! The think text is split into sentences s_1..s_n; a [`Verifier`] gives each sentence
//! per-label probabilities; its label set S_j is {labels with p > 0.1}, the argmax when that
//! is empty, the top 2 when it has more. With target g:
//! g = neutral: R = #{j : g ∈ S_j} / n; otherwise R = #{j : g ∈ S_j} / #{j : S_j ≠ {neutral}}
//! (0 when the denominator is 0). This follows the ERV code (`utils_reward_ERV.py`).

use selfemo_datasets::Emotion;

/// Probability threshold above which a label joins a sentence's set (ERV: 0.1).
pub const THRESHOLD: f64 = 0.1;
/// Most labels a sentence's set keeps (ERV: 2).
pub const TOP_K: usize = 2;

/// Anything that reads a sentence and gives per-label probabilities (sigmoid, independent).
pub trait Verifier {
    /// (label, probability) for each label of the set, for one sentence.
    fn probabilities(&self, sentence: &str) -> Vec<(Emotion, f64)>;
}

/// Splits text into sentences at `.`, `!`, `?` (runs of them) and newlines; blanks dropped.
pub fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let end_mark = matches!(c, '.' | '!' | '?');
        if c == '\n' || (end_mark && !chars.peek().is_some_and(|(_, n)| matches!(n, '.' | '!' | '?'))) {
            let end = i + c.len_utf8();
            let s = text[start..end].trim();
            if !s.is_empty() && s.chars().any(char::is_alphanumeric) {
                out.push(s);
            }
            start = end;
        }
    }
    let s = text[start..].trim();
    if !s.is_empty() && s.chars().any(char::is_alphanumeric) {
        out.push(s);
    }
    out
}

/// A sentence's label set S_j from its probabilities (threshold, top-2 cap, argmax fallback).
pub fn sentence_labels(mut probs: Vec<(Emotion, f64)>) -> Vec<Emotion> {
    probs.retain(|(_, p)| p.is_finite());
    probs.sort_by(|a, b| b.1.total_cmp(&a.1));
    let above: Vec<Emotion> = probs.iter().filter(|(_, p)| *p > THRESHOLD).take(TOP_K).map(|(e, _)| *e).collect();
    if above.is_empty() { probs.first().map(|(e, _)| vec![*e]).unwrap_or_default() } else { above }
}

/// R_exp for a think text against the target set (the answer, or gold): the ERV rule above,
/// where "g ∈ S_j" reads "S_j meets the target set" and the neutral case applies when the
/// target set is exactly {neutral}.
pub fn explanation_reward(think: &str, target: &[Emotion], neutral: Emotion, verifier: &dyn Verifier) -> f64 {
    let sets: Vec<Vec<Emotion>> = sentences(think).into_iter().map(|s| sentence_labels(verifier.probabilities(s))).collect();
    if sets.is_empty() || target.is_empty() {
        return 0.0;
    }
    let agree = sets.iter().filter(|s| s.iter().any(|e| target.contains(e))).count() as f64;
    let denominator = if target == [neutral] { sets.len() } else { sets.iter().filter(|s| s.as_slice() != [neutral]).count() };
    if denominator == 0 { 0.0 } else { agree / denominator as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfemo_datasets::labels::MELD;

    /// Gives each sentence the probabilities written in a table keyed by a word it contains.
    struct Table(Vec<(&'static str, Vec<(&'static str, f64)>)>);

    impl Verifier for Table {
        fn probabilities(&self, sentence: &str) -> Vec<(Emotion, f64)> {
            let row = self.0.iter().find(|(k, _)| sentence.contains(k)).map(|(_, r)| r.clone()).unwrap_or_default();
            row.into_iter().map(|(l, p)| (MELD.parse(l).unwrap(), p)).collect()
        }
    }

    fn e(n: &str) -> Emotion {
        MELD.parse(n).unwrap()
    }

    #[test]
    fn sentence_split() {
        assert_eq!(sentences("He yells!! She cries... Why?\nok"), ["He yells!!", "She cries...", "Why?", "ok"]);
        assert_eq!(sentences("  ... \n"), Vec::<&str>::new());
    }

    #[test]
    fn label_sets_threshold_cap_and_fallback() {
        let s = sentence_labels(vec![(e("joy"), 0.5), (e("anger"), 0.05), (e("surprise"), 0.3), (e("fear"), 0.2)]);
        assert_eq!(s, [e("joy"), e("surprise")], "top 2 of those above 0.1");
        let s = sentence_labels(vec![(e("joy"), 0.05), (e("anger"), 0.09)]);
        assert_eq!(s, [e("anger")], "argmax when none passes 0.1");
    }

    #[test]
    fn erv_rule_hand_worked() {
        let v =
            Table(vec![("yells", vec![("anger", 0.9), ("neutral", 0.0)]), ("coffee", vec![("neutral", 0.8)]), ("smiles", vec![("joy", 0.7), ("anger", 0.2)])]);
        // Target anger: 3 sentences, one neutral-only sentence leaves the denominator;
        // "yells" and "smiles" (anger among its top 2) agree: 2 / 2.
        let think = "He yells. He pours coffee. He smiles.";
        assert_eq!(explanation_reward(think, &[e("anger")], e("neutral"), &v), 1.0);
        // Target joy: only "smiles" agrees, 1 / 2.
        assert_eq!(explanation_reward(think, &[e("joy")], e("neutral"), &v), 0.5);
        // Target neutral: every sentence counts: 1 / 3.
        assert_eq!(explanation_reward(think, &[e("neutral")], e("neutral"), &v), 1.0 / 3.0);
        // Only neutral sentences and a non-neutral target: denominator 0 gives 0.
        assert_eq!(explanation_reward("He pours coffee.", &[e("joy")], e("neutral"), &v), 0.0);
        // Empty think or empty answer: 0.
        assert_eq!(explanation_reward("", &[e("joy")], e("neutral"), &v), 0.0);
        assert_eq!(explanation_reward(think, &[], e("neutral"), &v), 0.0);
    }
}
