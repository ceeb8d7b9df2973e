//! EPC and EEA on a scripted policy whose rationales and judgements are known.

use selfemo_datasets::{Corpus, Dataset, Dialogue, Split, Target, Utterance};
use selfemo_eval::faithfulness::{probe, report};
use selfemo_rewards::RewardConfig;
use selfemo_selfplay::fake::ScriptedPolicy;
use selfemo_selfplay::{FilledPrompt, JudgePrompt, RecogniserPrompt, RecognitionItem, ResponderPrompt, Roles};

#[test]
fn epc_and_eea_count_what_the_judge_reads_in_each_rationale() {
    let meld = Dataset::Meld.labels();
    let u = |t: &str, l: &str| Utterance { speaker: "A".into(), text: t.into(), label: meld.parse(l) };
    let d = Dialogue {
        id: "0".into(),
        split: Split::Test,
        utterances: vec![u("great!", "joy"), u("ugh.", "disgust"), u("what?", "surprise"), u("fine.", "neutral")],
    };
    let corpus = Corpus { dataset: Dataset::Meld, dialogues: vec![d] };
    let items: Vec<RecognitionItem> = (0..4).map(|t| RecognitionItem::from_target(&corpus, Target { dialogue: 0, turn: t }, 0, t as u64).unwrap()).collect();
    // The recogniser: a happy rationale for "great!" and "ugh." (answering joy both times), a
    // surprised rationale with the answer anger for "what?", and no contract for "fine.".
    // The judge reads "smiles" as joy and "shock" as surprise.
    let policy = ScriptedPolicy {
        reply: |p: &FilledPrompt, _: u64| {
            if p.user.contains("\"great!\"") || p.user.contains("\"ugh.\"") {
                "She smiles.</think><answer>joy</answer>".into()
            } else if p.user.contains("\"what?\"") {
                "Pure shock.</think><answer>anger</answer>".into()
            } else {
                "fine".into()
            }
        },
        score: |p: &FilledPrompt, label: &str| {
            let heard = if p.user.contains("smiles") { "joy" } else { "surprise" };
            if label == heard { 0.0 } else { -2.0 }
        },
    };
    let (rec, resp, rewards, judge) = (RecogniserPrompt::default(), ResponderPrompt::default(), RewardConfig::default(), JudgePrompt::default());
    let roles = Roles {
        recogniser: &rec,
        responder: &resp,
        rerecognition_prefix: "<answer>",
        judge: &judge,
        labels: meld,
        rewards: &rewards,
        max_prompt_tokens: 10_000,
    };
    let answers = probe(&policy, &roles, &items);
    assert_eq!(answers[0].rationale, "She smiles.");
    assert_eq!(answers[3].judged, None, "no contract, no rationale to judge");
    let r = report(&answers);
    assert_eq!((r.targets, r.rationales, r.predicted), (4, 3, 3));
    // judged = prediction for targets 0, 1 (joy = joy) but not 2 (surprise vs anger): 2 of 3.
    assert!((r.epc.unwrap() - 2.0 / 3.0).abs() < 1e-12);
    // judged = gold for targets 0 (joy) and 2 (surprise), not 1 (joy vs disgust): 2 of 3.
    assert!((r.eea.unwrap() - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(r.accuracy, 0.25);
    let none = report(&answers[3..]);
    assert_eq!((none.rationales, none.epc, none.eea), (0, None, None), "no rationale, no share");
}
