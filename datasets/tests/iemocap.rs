//! IEMOCAP loaders on small files written in the release's exact formats.

use selfemo_datasets::{Dataset, Split, iemocap, load};
use std::path::Path;

const TRANSCRIPT: &str = "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.\n\
Ses01F_impro01_M000 [007.5712-010.4750]: Do you have your forms?\n\
Ses01F_impro01_F001 [010.0100-011.3925]: Yeah.\n\
Ses01F_impro01_M001 [003.1000-004.0000]: Next.\n";

const EVALUATION: &str = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\
\n\
[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]\n\
C-E2:\tNeutral;\t()\n\
C-E3:\tNeutral;\t()\n\
A-E3:\tval 3; act 2; dom  2;\t()\n\
\n\
[7.5712 - 10.4750]\tSes01F_impro01_M000\tfru\t[2.5000, 3.5000, 3.0000]\n\
C-E2:\tFrustration;\t()\n\
\n\
[10.0100 - 11.3925]\tSes01F_impro01_F001\txxx\t[2.0000, 2.5000, 2.5000]\n\
C-E2:\tNeutral;\t()\n";

fn write(root: &Path, session: u32, dialog: &str, transcript: &str, evaluation: &str) {
    let base = root.join(format!("Session{session}/dialog"));
    std::fs::create_dir_all(base.join("transcriptions")).unwrap();
    std::fs::create_dir_all(base.join("EmoEvaluation/Categorical")).unwrap();
    std::fs::write(base.join(format!("transcriptions/{dialog}.txt")), transcript).unwrap();
    std::fs::write(base.join(format!("EmoEvaluation/{dialog}.txt")), evaluation).unwrap();
}

fn release(root: &Path) {
    write(root, 1, "Ses01F_impro01", TRANSCRIPT, EVALUATION);
    for s in 2..=4 {
        std::fs::create_dir_all(root.join(format!("Session{s}/dialog/transcriptions"))).unwrap();
    }
    let t5 = "Ses05M_script01_1_M000 [001.0000-002.0000]: Hi!\nSes05M_script01_1_F000 [002.5000-003.0000]: Great news!\n";
    let e5 = "% header\n\n[1.0000 - 2.0000]\tSes05M_script01_1_M000\thap\t[4.0, 3.0, 3.0]\n\n[2.5000 - 3.0000]\tSes05M_script01_1_F000\texc\t[4.5, 4.5, 3.0]\n";
    write(root, 5, "Ses05M_script01_1", t5, e5);
}

#[test]
fn official_layout_joins_on_id_orders_by_start_and_keeps_context() {
    let dir = tempfile::tempdir().unwrap();
    release(dir.path());
    let corpus = load(Dataset::Iemocap, Some(dir.path())).unwrap();
    assert_eq!(corpus.dialogues.len(), 2);
    let d = &corpus.dialogues[0];
    assert_eq!((d.id.as_str(), d.split), ("Ses01F_impro01", Split::Train));
    let got: Vec<_> = d.utterances.iter().map(|u| (u.speaker.as_str(), u.text.as_str(), u.label.map(|l| l.name()))).collect();
    assert_eq!(got, [("M", "Next.", None), ("F", "Excuse me.", Some("neutral")), ("M", "Do you have your forms?", Some("frustrated")), ("F", "Yeah.", None),]);
    let test = &corpus.dialogues[1];
    assert_eq!(test.split, Split::Test);
    let labels: Vec<_> = test.utterances.iter().map(|u| u.label.unwrap().name()).collect();
    assert_eq!(labels, ["happy", "excited"], "happy and excited stay apart");
    assert_eq!(corpus.targets(Split::Train).len(), 2);
}

#[test]
fn dagerc_copy_reads_codes_and_unlabelled_context() {
    let json = r#"[[{"text": "Hi.", "speaker": "Ses05F_impro01_F", "label": "neu"}, {"text": "Uh.", "speaker": "Ses05F_impro01_M"}, {"text": "Wow!", "speaker": "Ses05F_impro01_M", "label": "exc"}]]"#;
    let d = iemocap::parse_dagerc(json.as_bytes(), Path::new("test_data.json"), Split::Test).unwrap();
    assert_eq!(d[0].id, "Ses05F_impro01");
    let labels: Vec<_> = d[0].utterances.iter().map(|u| u.label.map(|l| l.name())).collect();
    assert_eq!(labels, [Some("neutral"), None, Some("excited")]);
    assert_eq!(d[0].utterances[1].speaker, "M");
}

#[test]
fn bad_iemocap_lines_name_file_and_line() {
    let bad = "Ses01F_impro01_F000 [006.2901-008.2357]: Fine.\nSes01F_impro01_M000 006.1-007.2: no brackets\n";
    let e = iemocap::parse_transcription(bad.as_bytes(), Path::new("Ses01F_impro01.txt")).unwrap_err();
    assert!(e.to_string().starts_with("Ses01F_impro01.txt: line 2: "), "{e}");

    let bad_eval = "% h\n\n[1.0 - 2.0]\tSes01F_impro01_F000\tneu\n";
    let e = iemocap::parse_evaluation(bad_eval.as_bytes(), Path::new("E.txt")).unwrap_err();
    assert!(e.to_string().contains("line 3") && e.to_string().contains("3 tab-separated fields"), "{e}");

    let bad_code = "[1.0 - 2.0]\tSes01F_impro01_F000\tjoy\t[1, 2, 3]\n";
    let e = iemocap::parse_evaluation(bad_code.as_bytes(), Path::new("E.txt")).unwrap_err();
    assert!(e.to_string().contains("unknown IEMOCAP label code \"joy\""), "{e}");

    let dir = tempfile::tempdir().unwrap();
    release(dir.path());
    std::fs::remove_file(dir.path().join("Session5/dialog/EmoEvaluation/Ses05M_script01_1.txt")).unwrap();
    let e = load(Dataset::Iemocap, Some(dir.path())).unwrap_err();
    assert!(e.to_string().contains("Ses05M_script01_1.txt") && e.to_string().contains("cannot read"), "{e}");
}
