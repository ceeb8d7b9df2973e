//! The shipped MELD and EmoryNLP files load with exactly the counts of data/README.md.

use selfemo_datasets::stats::stats;
use selfemo_datasets::{Dataset, Split, default_data_dir, emorynlp, load};

/// Per split: dialogues, utterances, and (label, count).
type Counts = Vec<(usize, usize, Vec<(String, usize)>)>;

fn counts(dataset: Dataset) -> Counts {
    let corpus = load(dataset, None).unwrap();
    stats(&corpus).into_iter().map(|s| (s.dialogues, s.utterances, s.labels.into_iter().map(|(e, n)| (e.name().to_string(), n)).collect())).collect()
}

fn label_count(split: &(usize, usize, Vec<(String, usize)>), label: &str) -> usize {
    split.2.iter().find(|(l, _)| l == label).unwrap().1
}

#[test]
fn meld_split_and_label_counts() {
    let c = counts(Dataset::Meld);
    assert_eq!([c[0].0, c[1].0, c[2].0], [1038, 114, 280]);
    assert_eq!([c[0].1, c[1].1, c[2].1], [9989, 1109, 2610]);
    let table = [
        ("neutral", [4710, 470, 1256]),
        ("joy", [1743, 163, 402]),
        ("surprise", [1205, 150, 281]),
        ("anger", [1109, 153, 345]),
        ("sadness", [683, 111, 208]),
        ("disgust", [271, 22, 68]),
        ("fear", [268, 40, 50]),
    ];
    for (label, want) in table {
        assert_eq!([label_count(&c[0], label), label_count(&c[1], label), label_count(&c[2], label)], want, "{label}");
    }
}

#[test]
fn emorynlp_split_and_label_counts() {
    let c = counts(Dataset::Emorynlp);
    assert_eq!([c[0].0, c[1].0, c[2].0], [713, 99, 85]);
    assert_eq!([c[0].1, c[1].1, c[2].1], [9934, 1344, 1328]);
    let table = [
        ("Neutral", [3034, 393, 349]),
        ("Joyful", [2184, 289, 282]),
        ("Scared", [1285, 178, 182]),
        ("Mad", [1076, 143, 113]),
        ("Peaceful", [900, 132, 159]),
        ("Powerful", [784, 134, 145]),
        ("Sad", [671, 75, 98]),
    ];
    for (label, want) in table {
        assert_eq!([label_count(&c[0], label), label_count(&c[1], label), label_count(&c[2], label)], want, "{label}");
    }
}

#[test]
fn meld_keeps_utf8_punctuation_quoted_commas_and_utterance_order() {
    let corpus = load(Dataset::Meld, None).unwrap();
    let first = &corpus.split(Split::Dev).next().unwrap().utterances[0];
    assert_eq!(first.text, "Oh my God, he\u{2019}s lost it. He\u{2019}s totally lost it.");
    assert_eq!(first.speaker, "Phoebe");
    assert_eq!(first.label.unwrap().name(), "sadness");
    let train0 = &corpus.split(Split::Train).next().unwrap().utterances[0];
    assert!(train0.text.starts_with("also I was the point person on my company\u{2019}s transition"));
    // Dialogue_ID 60 is missing from train: ids are kept, not renumbered.
    assert!(corpus.split(Split::Train).all(|d| d.id != "60"));
}

#[test]
fn emorynlp_season_and_dagerc_agree_utterance_by_utterance() {
    let dir = default_data_dir().join("emorynlp");
    for split in [Split::Dev, Split::Test] {
        let season_path = dir.join(emorynlp::season_file(split));
        let dagerc_path = dir.join("dagerc").join(emorynlp::dagerc_file(split));
        let season = emorynlp::parse_season(&std::fs::read(&season_path).unwrap(), &season_path, split).unwrap();
        let dagerc = emorynlp::parse_dagerc(&std::fs::read(&dagerc_path).unwrap(), &dagerc_path, split).unwrap();
        assert_eq!(season.len(), dagerc.len(), "{split}: dialogue count");
        let mut n = 0;
        for (a, b) in season.iter().zip(&dagerc) {
            assert_eq!(a.utterances, b.utterances, "{split}: scene {}", a.id);
            n += a.utterances.len();
        }
        assert_eq!(n, if split == Split::Dev { 1344 } else { 1328 });
    }
}

#[test]
fn emorynlp_multi_speaker_turns_are_kept() {
    let dir = default_data_dir().join("emorynlp");
    let path = dir.join(emorynlp::season_file(Split::Dev));
    let dev = emorynlp::parse_season(&std::fs::read(&path).unwrap(), &path, Split::Dev).unwrap();
    let multi = dev.iter().flat_map(|d| &d.utterances).filter(|u| u.speaker.split(' ').count() > 2).count();
    assert!(multi >= 5, "dev has 5 turns of 2-3 speakers, found {multi} multi-word speaker strings");
}
