//! Every loader, fed arbitrary bytes, returns data or an error and never panics.

use proptest::prelude::*;
use selfemo_datasets::{Split, emorynlp, iemocap, meld, unified};
use std::path::Path;

/// Bytes biased towards each format's own punctuation, so the parsers get deep, not just rejected.
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..400),
        proptest::collection::vec(
            prop_oneof![
                Just(b','),
                Just(b'"'),
                Just(b'\n'),
                Just(b'\r'),
                Just(b'\t'),
                Just(b'['),
                Just(b']'),
                Just(b'{'),
                Just(b'}'),
                Just(b':'),
                Just(b'-'),
                Just(b'0'),
                Just(b'7'),
                Just(b'.'),
                Just(b'_'),
                Just(b'a'),
                Just(0xe2),
                any::<u8>()
            ],
            0..400
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn meld_never_panics(tail in bytes()) {
        let mut csv = b"Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\r\n".to_vec();
        csv.extend(&tail);
        let _ = meld::parse(&csv, Path::new("f.csv"), Split::Train);
        let _ = meld::parse(&tail, Path::new("f.csv"), Split::Train);
    }

    #[test]
    fn json_loaders_never_panic(b in bytes()) {
        let _ = emorynlp::parse_season(&b, Path::new("f.json"), Split::Dev);
        let _ = emorynlp::parse_dagerc(&b, Path::new("f.json"), Split::Dev);
        let _ = iemocap::parse_dagerc(&b, Path::new("f.json"), Split::Dev);
    }

    #[test]
    fn iemocap_text_loaders_never_panic(b in bytes()) {
        let _ = iemocap::parse_transcription(&b, Path::new("t.txt"));
        let _ = iemocap::parse_evaluation(&b, Path::new("e.txt"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn unified_reader_never_panics(b in bytes()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.parquet");
        std::fs::write(&path, &b).unwrap();
        let _ = unified::read(&path);
    }
}
