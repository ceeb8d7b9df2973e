//! Scores against scikit-learn's values (tests/golden/metrics.json).

use selfemo_eval::scores::report;

#[test]
fn matches_scikit_learn() {
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/metrics.json")).unwrap()).unwrap();
    let meld = ["neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger"];
    for case in golden["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let strings = |k: &str| -> Vec<String> { case[k].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect() };
        let (gold, pred, order) = (strings("gold"), strings("pred"), strings("labels_in_order"));
        let g: Vec<&str> = gold.iter().map(String::as_str).collect();
        let p: Vec<Option<&str>> = pred.iter().map(|s| Some(s.as_str())).collect();
        let r = report(&g, &p, &meld);
        let close = |a: f64, b: &serde_json::Value, what: &str| assert!((a - b.as_f64().unwrap()).abs() < 1e-9, "{name}: {what} {a} vs {b}");
        close(r.accuracy, &case["accuracy"], "accuracy");
        close(r.weighted_f1, &case["weighted_f1"], "weighted F1");
        close(r.macro_f1, &case["macro_f1"], "macro F1");
        let labels: Vec<&str> = r.per_class.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(labels, order.iter().map(String::as_str).collect::<Vec<_>>(), "{name}: class order");
        for c in &r.per_class {
            let want = &case["per_class"][&c.label];
            close(c.precision, &want["precision"], "precision");
            close(c.recall, &want["recall"], "recall");
            close(c.f1, &want["f1"], "f1");
            assert_eq!(c.support as u64, want["support"].as_u64().unwrap());
        }
        let cm: Vec<Vec<usize>> = case["confusion_matrix_rows_gold_cols_pred"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect())
            .collect();
        assert_eq!(r.confusion, cm, "{name}: confusion matrix");
    }
}

#[test]
fn invalid_predictions_are_wrong_and_counted() {
    let r = report(&["joy", "anger", "joy"], &[Some("joy"), None, None], &["neutral", "joy", "anger"]);
    assert_eq!(r.accuracy, 1.0 / 3.0);
    assert_eq!(r.invalid_rate, 2.0 / 3.0);
    assert_eq!(r.per_class[0].recall, 0.5);
    assert_eq!(r.per_class[0].precision, 1.0);
    assert_eq!((r.top_prediction.as_deref(), r.top_prediction_share), (Some("joy"), 1.0 / 3.0), "of all predictions, invalid ones included");
}

#[test]
fn the_most_frequent_prediction_and_its_share() {
    // A collapsed policy: neutral for 4 of 5 targets (ties would go to the label-set order).
    let r = report(
        &["joy", "neutral", "anger", "neutral", "joy"],
        &[Some("neutral"), Some("neutral"), Some("neutral"), Some("neutral"), Some("joy")],
        &["neutral", "joy", "anger"],
    );
    assert_eq!((r.top_prediction.as_deref(), r.top_prediction_share), (Some("neutral"), 0.8));
    let tie = report(&["joy", "anger"], &[Some("anger"), Some("joy")], &["neutral", "joy", "anger"]);
    assert_eq!(tie.top_prediction.as_deref(), Some("joy"));
    let none = report(&["joy"], &[None], &["joy"]);
    assert_eq!((none.top_prediction, none.top_prediction_share), (None, 0.0));
}

/// PNG width and height from the IHDR chunk, after checking the signature.
fn png_size(path: &std::path::Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{} is not a PNG", path.display());
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn charts_are_written_as_png_without_leftovers() {
    use selfemo_eval::plots::{Series, confusion_chart, line_chart};
    let dir = tempfile::tempdir().unwrap();
    let curve = dir.path().join("reward.png");
    let s = Series { name: "reward".into(), points: vec![(1.0, 0.2), (2.0, f64::NAN), (3.0, 0.7)] };
    line_chart(&curve, "reward per step", "step", &[s]).unwrap();
    assert_eq!(png_size(&curve), (900, 500));
    let confusion = dir.path().join("confusion.png");
    let labels: Vec<String> = ["joy", "anger", "neutral"].iter().map(|s| s.to_string()).collect();
    confusion_chart(&confusion, "test", &labels, &labels, &[vec![3, 1, 0], vec![0, 2, 0], vec![1, 0, 5]]).unwrap();
    assert_eq!(png_size(&confusion), (120 + 80 * 3, 120 + 70 * 3));
    // an extra predicted column (unparseable answers) widens the chart, not the rows
    let columns: Vec<String> = labels.iter().cloned().chain(["invalid".to_string()]).collect();
    confusion_chart(&confusion, "test", &labels, &columns, &[vec![3, 1, 0, 2], vec![0, 2, 0, 0], vec![1, 0, 5, 1]]).unwrap();
    assert_eq!(png_size(&confusion), (120 + 80 * 4, 120 + 70 * 3));
    let names: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names.len(), 2, "only the two charts remain: {names:?}");
}
