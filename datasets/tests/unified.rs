//! The unified Parquet file round-trips every corpus exactly.

use selfemo_datasets::{Dataset, Dialogue, Split, Utterance, load, unified};

#[test]
fn meld_and_emorynlp_round_trip_exactly() {
    let corpora = vec![load(Dataset::Meld, None).unwrap(), load(Dataset::Emorynlp, None).unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("all.parquet");
    unified::write(&path, &corpora).unwrap();
    assert_eq!(unified::read(&path).unwrap(), corpora);
}

#[test]
fn context_turns_keep_a_null_label() {
    let corpus = selfemo_datasets::Corpus {
        dataset: Dataset::Iemocap,
        dialogues: vec![Dialogue {
            id: "Ses05F_impro01".into(),
            split: Split::Test,
            utterances: vec![
                Utterance { speaker: "F".into(), text: "Hm.".into(), label: None },
                Utterance { speaker: "M".into(), text: "Great!".into(), label: Dataset::Iemocap.labels().parse("excited") },
            ],
        }],
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("i.parquet");
    unified::write(&path, std::slice::from_ref(&corpus)).unwrap();
    assert_eq!(unified::read(&path).unwrap(), vec![corpus]);
}
