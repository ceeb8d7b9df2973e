//! Scores against scikit-learn's values (tests/golden/metrics.json).

use selfemo_trainer::scores::report;

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
}
