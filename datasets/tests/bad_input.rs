//! Bad input gives an error naming the file and the line or JSON path, never a panic.

use selfemo_datasets::{Location, Split, emorynlp, meld};
use std::path::Path;

const HEADER: &str = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\r\n";
const ROW: &str = "1,\"Oh, hi.\",Ross,joy,positive,0,0,1,1,\"00:00:01,000\",\"00:00:02,000\"\r\n";

fn meld_err(csv: &[u8]) -> selfemo_datasets::DataError {
    meld::parse(csv, Path::new("dev_sent_emo.csv"), Split::Dev).unwrap_err()
}

#[test]
fn meld_good_rows_parse() {
    let d = meld::parse(format!("{HEADER}{ROW}").as_bytes(), Path::new("x.csv"), Split::Dev).unwrap();
    assert_eq!(d[0].utterances[0].text, "Oh, hi.");
}

#[test]
fn meld_truncated_row() {
    let e = meld_err(format!("{HEADER}{ROW}2,Hey,Ross,joy,positive,0\r\n").as_bytes());
    assert_eq!(e.location, Location::Line(3));
    assert!(e.to_string().starts_with("dev_sent_emo.csv: line 3: row has 6 fields"), "{e}");
}

#[test]
fn meld_unknown_label() {
    let e = meld_err(format!("{HEADER}{}", ROW.replace("joy", "excited")).as_bytes());
    assert_eq!(e.location, Location::Line(2));
    assert!(e.message.contains("unknown MELD label \"excited\""), "{e}");
}

#[test]
fn meld_missing_column() {
    let e = meld_err(format!("{}{ROW}", HEADER.replace("Emotion", "Feeling")).as_bytes());
    assert_eq!(e.location, Location::Line(1));
    assert!(e.message.contains("missing column `Emotion`"), "{e}");
}

#[test]
fn meld_invalid_utf8() {
    let mut bytes = format!("{HEADER}{ROW}").into_bytes();
    bytes.extend_from_slice(b"2,caf\xe9,Ross,joy,positive,0,1,1,1,\"a\",\"b\"\r\n");
    let e = meld_err(&bytes);
    assert_eq!(e.location, Location::Line(3));
    assert!(e.message.contains("`Utterance` is not valid UTF-8"), "{e}");
}

#[test]
fn meld_non_numeric_id_and_duplicate_key() {
    let e = meld_err(format!("{HEADER}{}", ROW.replace(",0,0,", ",x,0,")).as_bytes());
    assert!(e.message.contains("`Dialogue_ID` is not a number"), "{e}");
    let e = meld_err(format!("{HEADER}{ROW}{ROW}").as_bytes());
    assert_eq!(e.location, Location::Line(3));
    assert!(e.message.contains("duplicate"), "{e}");
}

#[test]
fn emorynlp_json_type_error_names_the_path() {
    let json = r#"[[{"text": "Hi", "speaker": "Ross", "label": "Neutral"}, {"text": 5, "speaker": "Ross", "label": "Neutral"}]]"#;
    let e = emorynlp::parse_dagerc(json.as_bytes(), Path::new("dev_data.json"), Split::Dev).unwrap_err();
    assert_eq!(e.location, Location::JsonPath("[0][1].text".into()));
    assert!(e.to_string().starts_with("dev_data.json: at JSON path [0][1].text: invalid type"), "{e}");
}

#[test]
fn emorynlp_unknown_label_and_syntax_error() {
    let json = r#"[[{"text": "Hi", "speaker": "Ross", "label": "Bored"}]]"#;
    let e = emorynlp::parse_dagerc(json.as_bytes(), Path::new("d.json"), Split::Dev).unwrap_err();
    assert_eq!(e.location, Location::JsonPath("[0][0].label".into()));
    assert!(e.message.contains("unknown label \"Bored\""));

    let season = "{\"season_id\": \"dev\",\n \"episodes\": [ {\"scenes\": [ {\"scene_id\": \"s1\", \"utterances\": [\n {\"speakers\": [\"A\"], \"transcript\": \"x\", \"emotion\": \"Sad\"}, ]}]}]}";
    let e = emorynlp::parse_season(season.as_bytes(), Path::new("s.json"), Split::Dev).unwrap_err();
    assert_eq!(e.location, Location::Line(3));

    let season = r#"{"episodes": [{"scenes": [{"scene_id": "s1", "utterances": [{"speakers": "A", "transcript": "x", "emotion": "Sad"}]}]}]}"#;
    let e = emorynlp::parse_season(season.as_bytes(), Path::new("s.json"), Split::Dev).unwrap_err();
    assert_eq!(e.location, Location::JsonPath("episodes[0].scenes[0].utterances[0].speakers".into()));
}

#[test]
fn meld_line_numbers_with_lf_endings() {
    let csv = format!("{HEADER}{ROW}2,Hey,Ross,joy,positive,0\r\n").replace("\r\n", "\n");
    let e = meld_err(csv.as_bytes());
    assert_eq!(e.location, Location::Line(3));
}
