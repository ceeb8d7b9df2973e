//! Label similarity from a valence–arousal table, for the similarity-smoothed IoU.
//!
//! [RECON] Coordinates are our own coarse placement of every label of MELD, EmoryNLP and
//! IEMOCAP on the two axes of Russell's circumplex model of affect (J. A. Russell, "A
//! circumplex model of affect", J. Personality and Social Psychology 39(6), 1980): valence
//! (unpleasant −1 .. pleasant +1) and arousal (calm −1 .. activated +1). They are rounded
//! to tenths to make plain that they order the labels, not measure them; synonyms across
//! datasets (joy/Joyful/happy) share one point.

use selfemo_datasets::Emotion;
use serde::{Deserialize, Serialize};

/// (label, valence, arousal) for every label of the three datasets, compared case-insensitively.
pub const VALENCE_AROUSAL: &[(&str, f64, f64)] = &[
    ("neutral", 0.0, 0.0),
    ("joy", 0.8, 0.5),
    ("joyful", 0.8, 0.5),
    ("happy", 0.8, 0.5),
    ("excited", 0.7, 0.8),
    ("surprise", 0.2, 0.8),
    ("powerful", 0.6, 0.4),
    ("peaceful", 0.6, -0.5),
    ("sadness", -0.7, -0.4),
    ("sad", -0.7, -0.4),
    ("fear", -0.6, 0.7),
    ("scared", -0.6, 0.7),
    ("anger", -0.7, 0.8),
    ("mad", -0.7, 0.8),
    ("angry", -0.7, 0.8),
    ("frustrated", -0.6, 0.5),
    ("disgust", -0.7, 0.3),
];

/// The (valence, arousal) point of a label, if the table has it.
pub fn valence_arousal(e: Emotion) -> Option<(f64, f64)> {
    VALENCE_AROUSAL.iter().find(|(n, _, _)| n.eq_ignore_ascii_case(e.name())).map(|(_, v, a)| (*v, *a))
}

/// How two labels are compared inside the soft IoU.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Similarity {
    /// 1 for the same label, else 0 (soft IoU = smoothed IoU).
    Exact,
    /// sim(a, b) = max(0, 1 − d(a, b) / radius), d the Euclidean distance in the
    /// valence–arousal plane of [`VALENCE_AROUSAL`].
    ValenceArousal {
        /// Distance at which similarity reaches 0 (default 1.0: angry vs frustrated ≈ 0.68).
        radius: f64,
    },
}

impl Similarity {
    /// The valence–arousal similarity with the given radius.
    pub fn valence_arousal(radius: f64) -> Self {
        Similarity::ValenceArousal { radius }
    }

    /// sim(a, b) in [0, 1], 1 when a = b.
    pub fn between(&self, a: Emotion, b: Emotion) -> f64 {
        if a == b {
            return 1.0;
        }
        match self {
            Similarity::Exact => 0.0,
            Similarity::ValenceArousal { radius } => match (valence_arousal(a), valence_arousal(b)) {
                (Some((va, aa)), Some((vb, ab))) if *radius > 0.0 => {
                    let d = ((va - vb).powi(2) + (aa - ab).powi(2)).sqrt();
                    (1.0 - d / radius).max(0.0)
                }
                _ => 0.0,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfemo_datasets::Dataset;

    #[test]
    fn every_label_of_every_dataset_has_a_point() {
        for d in Dataset::ALL {
            for e in d.labels().emotions() {
                assert!(valence_arousal(e).is_some(), "{d}: {e}");
            }
        }
    }

    #[test]
    fn near_misses_score_above_opposites() {
        let iem = Dataset::Iemocap.labels();
        let sim = Similarity::valence_arousal(1.0);
        let p = |n| iem.parse(n).unwrap();
        assert!((sim.between(p("angry"), p("frustrated")) - (1.0 - 0.1f64.sqrt())).abs() < 1e-12);
        assert!(sim.between(p("happy"), p("excited")) > 0.5);
        assert_eq!(sim.between(p("happy"), p("sad")), 0.0);
        assert_eq!(sim.between(p("sad"), p("sad")), 1.0);
        assert_eq!(Similarity::Exact.between(p("angry"), p("frustrated")), 0.0);
    }
}
