//! The self-play logic on a scripted policy: rollouts, keep-rules, dedup, caps, prompt
//! truncation, synthetic-turn labels, the Parquet store and the hand-over between iterations.

use selfemo_datasets::{Corpus, Dataset, Dialogue, Emotion, Split, Target, Utterance};
use selfemo_rewards::RewardConfig;
use selfemo_selfplay::fake::ScriptedPolicy;
use selfemo_selfplay::{
    EmotionDraw, ExpressionItem, FilledPrompt, Flywheel, FlywheelConfig, JudgePrompt, Kind, Policy, RecogniserPrompt, RecognitionItem, ResponderPrompt, Roles,
    TargetEmotion, Verdict, recognise, respond, store,
};

fn meld(name: &str) -> Emotion {
    Dataset::Meld.labels().parse(name).unwrap()
}

fn corpus() -> Corpus {
    let u = |s: &str, t: &str, l: &str| Utterance { speaker: s.into(), text: t.into(), label: Some(meld(l)) };
    let d = Dialogue {
        id: "3".into(),
        split: Split::Train,
        utterances: vec![
            u("Ross", "I have news.", "neutral"),
            u("Rachel", "Tell me!", "surprise"),
            u("Ross", "I got the job!", "joy"),
            u("Rachel", "That's amazing!", "joy"),
        ],
    };
    Corpus { dataset: Dataset::Meld, dialogues: vec![d] }
}

/// Recogniser: seeds divisible by 3 write no answer, else even seeds answer joy and odd ones
/// sadness. Responder: a cheerful line for even seeds, a gloomy one for odd. The re-recogniser
/// hears joy in "great" and sadness otherwise.
fn policy() -> ScriptedPolicy<impl Fn(&FilledPrompt, u64) -> String, impl Fn(&FilledPrompt, &str) -> f64> {
    ScriptedPolicy {
        reply: |p: &FilledPrompt, seed: u64| {
            if p.system.contains("continue conversations") {
                if seed.is_multiple_of(2) { "Rachel: That's great news!\nmore".into() } else { "\"Oh no, that is sad.\"".into() }
            } else if seed.is_multiple_of(3) {
                "no idea".into()
            } else if seed.is_multiple_of(2) {
                "ok</think><answer>joy</answer>".into()
            } else {
                "hm</think><answer>sadness</answer>".into()
            }
        },
        score: |p: &FilledPrompt, label: &str| {
            let heard = if p.user.contains("great") { "joy" } else { "sadness" };
            if label == heard { -0.1 } else { -3.0 }
        },
    }
}

static JUDGE: std::sync::LazyLock<JudgePrompt> = std::sync::LazyLock::new(JudgePrompt::default);

fn roles<'a>(recogniser: &'a RecogniserPrompt, responder: &'a ResponderPrompt, rewards: &'a RewardConfig, budget: usize) -> Roles<'a> {
    Roles {
        recogniser,
        responder,
        rerecognition_prefix: "<think>x</think><answer>",
        judge: &JUDGE,
        labels: Dataset::Meld.labels(),
        rewards,
        max_prompt_tokens: budget,
    }
}

#[test]
fn keep_rules_dedup_and_caps() {
    let c = corpus();
    let (rec, resp, rewards) = (RecogniserPrompt::default(), ResponderPrompt::default(), RewardConfig::default());
    let roles = roles(&rec, &resp, &rewards, 10_000);
    let p = policy();
    let items = vec![RecognitionItem::from_target(&c, Target { dialogue: 0, turn: 2 }, 5, 0).unwrap()];
    let groups = recognise(&p, &roles, &items, 8, 1, 0);
    assert_eq!(groups[0].samples.len(), 8);
    let expr = vec![ExpressionItem::from_target(&c, Target { dialogue: 0, turn: 2 }, 5, 1, 0, &EmotionDraw::new(TargetEmotion::NextTurn, &c)).unwrap()];
    assert_eq!(expr[0].emotion.name(), "joy", "e* is the next turn's gold label");
    let responses = respond(&p, &p, &roles, &expr, 8, 1, 0, &[]);

    let config = FlywheelConfig { tau_u: 1.0, tau_e: 0.0, max_per_source: 2 };
    let mut fly = Flywheel::new(Vec::new());
    let counts = fly.admit(1, 1, &groups, &responses, &config);
    let good = groups[0].samples.iter().filter(|s| s.reward.format == 1.0 && s.reward.recognition == Some(1.0)).count();
    assert!(good >= 2, "the script gives several correct samples: {good}");
    assert_eq!(counts.recognition_seen, 8);
    assert_eq!(counts.recognition_below_tau, 8 - good);
    assert_eq!(counts.kept_recognition, 1, "all correct samples read alike: one is kept, the rest are duplicates");
    // Synthetic: with τ_E = 0 every non-empty turn passes the rule; both texts are kept once.
    let synthetic: Vec<_> = fly.rows().iter().filter(|r| r.kind == Kind::Synthetic).collect();
    assert_eq!(counts.kept_synthetic, synthetic.len());
    assert_eq!(synthetic.len(), 2, "two distinct turns, cap 2");
    assert_eq!(counts.duplicates, (good - 1) + (8 - 2));
    for r in &synthetic {
        assert_eq!(r.label, "joy", "a synthetic turn is labelled e*");
        assert_eq!(r.speaker, "Rachel");
        assert_eq!(r.context.last().unwrap().text, "I got the job!");
    }
    let happy = synthetic.iter().find(|r| r.prediction == "joy").expect("the cheerful turn is re-recognised as joy");
    assert_eq!(happy.turn, "That's great news!", "speaker prefix and later lines are cut");
    assert_eq!(happy.reward_expression, Some(1.0));
    let sad = synthetic.iter().find(|r| r.prediction == "sadness").unwrap();
    assert_eq!(sad.turn, "Oh no, that is sad.", "quotes are cut");
    assert_eq!(sad.reward_expression, Some(1.0 / 3.0), "IoU_s({{sadness}}, {{joy}}) = (0 + 1) / (2 + 1) with λ = 1");

    // Offering the same rollouts again keeps nothing new: duplicates.
    let again = fly.admit(1, 2, &groups, &responses, &config);
    assert_eq!((again.kept_recognition, again.kept_synthetic), (0, 0));
    assert_eq!(again.duplicates, good + 8);

    // A τ_E just under the group's mean R_E keeps its agreeing turns only (sad turns score 1/3);
    // just over it, the group is dropped.
    let mean = responses[0].mean_expression();
    let happy_n = responses[0].samples.iter().filter(|s| s.rerecognised == Some(meld("joy"))).count();
    assert!(mean > 1.0 / 3.0 && mean < 1.0);
    let counts = Flywheel::new(Vec::new()).admit(1, 1, &[], &responses, &FlywheelConfig { tau_e: mean - 1e-9, ..config.clone() });
    assert_eq!((counts.kept_synthetic, counts.synthetic_below_tau, counts.duplicates), (1, 8 - happy_n, happy_n - 1));
    let counts = Flywheel::new(Vec::new()).admit(1, 1, &[], &responses, &FlywheelConfig { tau_e: mean + 1e-9, ..config.clone() });
    assert_eq!((counts.kept_synthetic, counts.synthetic_below_tau), (0, 8));
    let counts = Flywheel::new(Vec::new()).admit(1, 1, &[], &responses, &FlywheelConfig { tau_e: 1.0, ..config });
    assert_eq!((counts.kept_synthetic, counts.synthetic_below_tau), (0, 8));
}

#[test]
fn cap_limits_rows_per_source_across_iterations() {
    let c = corpus();
    let (rec, resp, rewards) = (RecogniserPrompt::default(), ResponderPrompt::default(), RewardConfig::default());
    let roles = roles(&rec, &resp, &rewards, 10_000);
    // Every completion distinct and correct: only the cap stops them.
    let p =
        ScriptedPolicy { reply: |_: &FilledPrompt, seed: u64| format!("reason {seed}</think><answer>joy</answer>"), score: |_: &FilledPrompt, _: &str| 0.0 };
    let items = vec![RecognitionItem::from_target(&c, Target { dialogue: 0, turn: 2 }, 5, 0).unwrap()];
    let groups = recognise(&p, &roles, &items, 6, 1, 0);
    let config = FlywheelConfig { tau_u: 1.0, tau_e: 1.0, max_per_source: 2 };
    let mut fly = Flywheel::new(Vec::new());
    let counts = fly.admit(1, 1, &groups, &[], &config);
    assert_eq!((counts.kept_recognition, counts.over_cap, counts.duplicates), (2, 4, 0));
    // The state is rebuilt from the stored rows: the cap still holds in iteration 2.
    let mut next = Flywheel::new(fly.rows().to_vec());
    let later = recognise(&p, &roles, &items, 6, 1, 5);
    assert_eq!(next.admit(2, 6, &later, &[], &config).kept_recognition, 0);
}

#[test]
fn prompts_fit_the_budget_dropping_the_oldest_turns() {
    let c = corpus();
    let (rec, resp, rewards) = (RecogniserPrompt::default(), ResponderPrompt::default(), RewardConfig::default());
    let p = policy();
    let item = RecognitionItem::from_target(&c, Target { dialogue: 0, turn: 3 }, 5, 0).unwrap();
    let full = roles(&rec, &resp, &rewards, 10_000).recognition_prompt(&p, &item);
    let budget = p.prompt_len(&full) - 1;
    let cut = roles(&rec, &resp, &rewards, budget).recognition_prompt(&p, &item);
    assert!(p.prompt_len(&cut) <= budget);
    assert!(!cut.user.contains("I have news.") && cut.user.contains("Tell me!") && cut.user.contains("That's amazing!"));
    let expr = ExpressionItem::from_target(&c, Target { dialogue: 0, turn: 2 }, 5, 0, 0, &EmotionDraw::new(TargetEmotion::NextTurn, &c)).unwrap();
    let tiny = roles(&rec, &resp, &rewards, 1).expression_prompt(&p, &expr);
    assert!(tiny.user.contains("Ross: I got the job!") && !tiny.user.contains("Tell me!"), "the turn answered always stays");
}

#[test]
fn store_round_trips_and_synthetic_turns_become_next_iteration_items() {
    let c = corpus();
    let (rec, resp, rewards) = (RecogniserPrompt::default(), ResponderPrompt::default(), RewardConfig::default());
    let roles = roles(&rec, &resp, &rewards, 10_000);
    let p = policy();
    let items: Vec<RecognitionItem> = (1..4).map(|t| RecognitionItem::from_target(&c, Target { dialogue: 0, turn: t }, 5, t as u64).unwrap()).collect();
    let expr: Vec<ExpressionItem> = (0..3)
        .map(|t| ExpressionItem::from_target(&c, Target { dialogue: 0, turn: t }, 5, 10 + t as u64, 0, &EmotionDraw::new(TargetEmotion::NextTurn, &c)).unwrap())
        .collect();
    let config = FlywheelConfig { tau_u: 1.0, tau_e: 0.0, max_per_source: 3 };
    let mut fly = Flywheel::new(Vec::new());
    fly.admit(1, 1, &recognise(&p, &roles, &items, 4, 9, 0), &respond(&p, &p, &roles, &expr, 4, 9, 0, &[]), &config);
    let rows = fly.iteration_rows(1);
    assert!(rows.iter().any(|r| r.kind == Kind::Synthetic) && rows.iter().any(|r| r.kind == Kind::Recognition));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flywheel.parquet");
    store::write(&path, &rows).unwrap();
    assert_eq!(store::read(&path).unwrap(), rows);

    // Iteration 2 reads what 1 kept: each synthetic turn is a recognition item labelled e*.
    let next = Flywheel::new(store::read(&path).unwrap());
    assert!(next.synthetic_items(1, Dataset::Meld.labels(), 100).is_empty(), "iteration 1 sees nothing from itself");
    let synthetic = next.synthetic_items(2, Dataset::Meld.labels(), 100);
    let kept: Vec<_> = rows.iter().filter(|r| r.kind == Kind::Synthetic).collect();
    assert_eq!(synthetic.len(), kept.len());
    for (item, row) in synthetic.iter().zip(kept) {
        assert!(item.synthetic);
        assert_eq!(item.gold.name(), row.label);
        assert_eq!(item.window().target.text, row.turn);
        assert_eq!(item.window().target.speaker, row.speaker);
        assert_eq!(item.window().context.len(), row.context.len());
    }
    assert_eq!(synthetic.iter().map(|i| i.id).collect::<Vec<_>>(), (100..100 + synthetic.len() as u64).collect::<Vec<_>>());
    // ... and its kept recognition rows are iteration 2's SFT examples: the item and the
    // completion after the reply prefix.
    let examples = next.recognition_examples(1, Dataset::Meld.labels(), "<think>", 0);
    let kept: Vec<_> = rows.iter().filter(|r| r.kind == Kind::Recognition).collect();
    assert_eq!(examples.len(), kept.len());
    for ((item, completion), row) in examples.iter().zip(kept) {
        assert_eq!(format!("<think>{completion}"), row.completion);
        assert_eq!((item.gold.name(), item.window().target.text.as_str()), (row.label.as_str(), row.turn.as_str()));
    }
    assert!(next.recognition_examples(2, Dataset::Meld.labels(), "<think>", 0).is_empty());
    let again = recognise(&p, &roles, &synthetic, 2, 9, 1);
    assert!(again.iter().all(|g| g.prompt.user.contains(&g.item.turns.last().unwrap().text)));
}

#[test]
fn same_seed_same_rows() {
    let c = corpus();
    let (rec, resp, rewards) = (RecogniserPrompt::default(), ResponderPrompt::default(), RewardConfig::default());
    let roles = roles(&rec, &resp, &rewards, 10_000);
    let p = ScriptedPolicy {
        reply: |_: &FilledPrompt, seed: u64| format!("r{}</think><answer>{}</answer>", seed % 5, ["joy", "neutral"][(seed % 2) as usize]),
        score: |_: &FilledPrompt, _: &str| 0.0,
    };
    let run = |seed: u64| {
        let items: Vec<RecognitionItem> = (1..4).map(|t| RecognitionItem::from_target(&c, Target { dialogue: 0, turn: t }, 5, t as u64).unwrap()).collect();
        let mut fly = Flywheel::new(Vec::new());
        fly.admit(1, 1, &recognise(&p, &roles, &items, 4, seed, 0), &[], &FlywheelConfig { tau_u: 0.0, max_per_source: 9, ..Default::default() });
        fly.rows().to_vec()
    };
    assert_eq!(run(3), run(3));
    assert_ne!(run(3), run(4), "the seed reaches the samples");
}

#[test]
fn bad_files_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flywheel.parquet");
    std::fs::write(&path, b"not parquet").unwrap();
    let err = store::read(&path).unwrap_err().to_string();
    assert!(err.contains("flywheel.parquet") && err.contains("Parquet"), "{err}");
}

#[test]
fn rationales_are_kept_only_when_the_label_free_reprediction_agrees() {
    let c = corpus();
    let (rec, resp, rewards) = (RecogniserPrompt::default(), ResponderPrompt::default(), RewardConfig::default());
    let roles = roles(&rec, &resp, &rewards, 10_000);
    // The policy explains joy convincingly and anything else badly; the re-predictor reads the
    // explanation in the reply prefix, and never sees the hint.
    let p = ScriptedPolicy {
        reply: |p: &FilledPrompt, _: u64| {
            assert_eq!(p.reply_prefix, "<think>");
            if p.user.contains("The answer is joy") { "They sound delighted.</think><answer>joy</answer>".into() } else { "\nNo clue.\nreally</think>".into() }
        },
        score: |p: &FilledPrompt, label: &str| {
            assert!(!p.user.contains("The answer is"), "the re-prediction is label-free");
            let heard = if p.reply_prefix.contains("delighted") { "joy" } else { "neutral" };
            if label == heard { 0.0 } else { -1.0 }
        },
    };
    let items: Vec<RecognitionItem> = (0..4).map(|t| RecognitionItem::from_target(&c, Target { dialogue: 0, turn: t }, 5, t as u64).unwrap()).collect();
    let out = selfemo_selfplay::rationales(&p, &roles, &items, "\nThe answer is {emotion}. Explain why.", 1);
    let kept: Vec<(&str, &str)> = out.iter().filter(|r| r.kept()).map(|r| (r.item.gold.name(), r.text.as_str())).collect();
    // gold: neutral, surprise, joy, joy. Joy is explained and re-predicted; "No clue." is
    // re-predicted as neutral, which is right for turn 0 only.
    assert_eq!(kept, [("neutral", "No clue."), ("joy", "They sound delighted."), ("joy", "They sound delighted.")]);
    assert_eq!(out[1].repredicted, Some(meld("neutral")));
    assert!(!out[1].kept());
    assert_eq!(out[2].completion(), "They sound delighted.</think><answer>joy</answer>");
}

#[test]
fn rationales_that_name_an_emotion_are_rejected_whatever_the_reprediction() {
    let c = corpus();
    let (rec, resp, rewards) = (RecogniserPrompt::default(), ResponderPrompt::default(), RewardConfig::default());
    let roles = roles(&rec, &resp, &rewards, 10_000);
    // Joy is explained by naming it (a synonym, "happy"), surprise by what happens; the
    // re-predictor reads both right.
    let p = ScriptedPolicy {
        reply: |p: &FilledPrompt, _: u64| {
            if p.user.contains("The answer is joy") { "She is so happy.</think>".into() } else { "Her jaw drops.</think>".into() }
        },
        score: |p: &FilledPrompt, label: &str| {
            let heard = if p.reply_prefix.contains("happy") { "joy" } else { "surprise" };
            if label == heard { 0.0 } else { -1.0 }
        },
    };
    let items: Vec<RecognitionItem> = (1..3).map(|t| RecognitionItem::from_target(&c, Target { dialogue: 0, turn: t }, 5, t as u64).unwrap()).collect();
    let out = selfemo_selfplay::rationales(&p, &roles, &items, "\nThe answer is {emotion}.", 1);
    // gold: surprise, joy
    assert_eq!(out[0].verdict(), Verdict::Kept);
    assert_eq!(out[1].repredicted, Some(meld("joy")), "the re-prediction agrees ...");
    assert_eq!(out[1].verdict(), Verdict::NamesEmotion, "... but only because the rationale names the label");
    assert!(!out[1].kept());
}

#[test]
fn the_explanation_reward_judges_each_rationale_and_a_disagreeing_one_lowers_the_total() {
    let c = corpus();
    let (rec, resp) = (RecogniserPrompt::default(), ResponderPrompt::default());
    let mut rewards = RewardConfig::default();
    rewards.weights.explanation = 1.0;
    let judged = roles(&rec, &resp, &rewards, 10_000);
    // Every sample answers joy (gold); even seeds explain it with a smile, odd ones with fury.
    // The judge (the same scripted policy, in score mode) reads a smile as joy, fury as anger.
    let p = ScriptedPolicy {
        reply: |_: &FilledPrompt, seed: u64| {
            if seed.is_multiple_of(2) { "She smiles.</think><answer>joy</answer>".into() } else { "He is furious.</think><answer>joy</answer>".into() }
        },
        score: |p: &FilledPrompt, label: &str| {
            assert!(p.system.contains("explanations"), "only the judge is asked to score");
            let heard = if p.user.contains("smiles") { "joy" } else { "anger" };
            if label == heard { 0.0 } else { -4.0 }
        },
    };
    let items = vec![RecognitionItem::from_target(&c, Target { dialogue: 0, turn: 2 }, 5, 0).unwrap()];
    let groups = recognise(&p, &judged, &items, 8, 1, 0);
    let (mut agreeing, mut disagreeing) = (Vec::new(), Vec::new());
    for s in &groups[0].samples {
        assert_eq!((s.reward.format, s.reward.recognition), (1.0, Some(1.0)), "every answer is right");
        if s.completion.text.starts_with("She smiles") { agreeing.push(&s.reward) } else { disagreeing.push(&s.reward) }
    }
    assert!(!agreeing.is_empty() && !disagreeing.is_empty(), "both kinds were sampled");
    assert!(agreeing.iter().all(|r| r.explanation == Some(1.0)));
    assert!(disagreeing.iter().all(|r| r.explanation == Some(0.0)), "the rationale describes anger, the answer is joy");
    assert!(agreeing[0].total > disagreeing[0].total, "{} vs {}", agreeing[0].total, disagreeing[0].total);
    // Without the weight, no judge pass and no component.
    let unweighted = RewardConfig::default();
    let plain = roles(&rec, &resp, &unweighted, 10_000);
    let p = ScriptedPolicy { reply: p.reply, score: |_: &FilledPrompt, _: &str| -> f64 { panic!("no judge without w_x") } };
    assert!(recognise(&p, &plain, &items, 2, 1, 0)[0].samples.iter().all(|s| s.reward.explanation.is_none()));
}

#[test]
fn a_responder_turn_that_names_a_label_earns_nothing_and_is_never_kept() {
    let c = corpus();
    let (rec, resp, rewards) = (RecogniserPrompt::default(), ResponderPrompt::default(), RewardConfig::default());
    let roles = roles(&rec, &resp, &rewards, 10_000);
    // Even seeds name the emotion, odd ones express it; the re-recogniser hears joy in both.
    let p = ScriptedPolicy {
        reply: |_: &FilledPrompt, seed: u64| if seed.is_multiple_of(2) { "Pure joy, Ross!".into() } else { "That's wonderful, I'm so happy!".into() },
        score: |_: &FilledPrompt, label: &str| if label == "joy" { 0.0 } else { -3.0 },
    };
    let expr = vec![ExpressionItem::from_target(&c, Target { dialogue: 0, turn: 2 }, 5, 1, 0, &EmotionDraw::new(TargetEmotion::NextTurn, &c)).unwrap()];
    let responses = respond(&p, &p, &roles, &expr, 8, 1, 0, &[]);
    let naming: Vec<_> = responses[0].samples.iter().filter(|s| s.turn.contains("joy")).collect();
    assert!(!naming.is_empty() && naming.len() < 8, "both kinds were sampled");
    for s in &responses[0].samples {
        assert_eq!(s.rerecognised, Some(meld("joy")));
        let names = s.turn.contains("joy");
        assert_eq!(s.reward.expression, Some(if names { 0.0 } else { 1.0 }), "{:?}", s.turn);
        assert!(s.mention.is_some(), "a label or a synonym: counted either way");
    }
    let mut fly = Flywheel::new(Vec::new());
    let counts = fly.admit(1, 1, &[], &responses, &FlywheelConfig { tau_u: 1.0, tau_e: 0.0, max_per_source: 8 });
    assert_eq!(counts.synthetic_names_label, naming.len());
    assert!(fly.rows().iter().all(|r| !r.turn.contains("joy")), "never kept, even at tau_e = 0");
    assert_eq!(counts.kept_synthetic, 1, "the expressive turn, once (the rest are repeats)");
}

#[test]
fn the_rerecogniser_can_be_another_policy() {
    let c = corpus();
    let (rec, resp, rewards) = (RecogniserPrompt::default(), ResponderPrompt::default(), RewardConfig::default());
    let roles = roles(&rec, &resp, &rewards, 10_000);
    let writer = policy(); // its own re-recogniser hears joy in "great", sadness otherwise
    let frozen = ScriptedPolicy {
        reply: |_: &FilledPrompt, _: u64| -> String { panic!("the re-recogniser only scores") },
        score: |_: &FilledPrompt, l: &str| if l == "neutral" { 0.0 } else { -1.0 },
    };
    let expr = vec![ExpressionItem::from_target(&c, Target { dialogue: 0, turn: 2 }, 5, 1, 0, &EmotionDraw::new(TargetEmotion::NextTurn, &c)).unwrap()];
    let own = respond(&writer, &writer, &roles, &expr, 4, 1, 0, &[]);
    let other = respond(&writer, &frozen, &roles, &expr, 4, 1, 0, &[]);
    let turns = |g: &[selfemo_selfplay::ExpressionGroup]| g[0].samples.iter().map(|s| s.turn.clone()).collect::<Vec<_>>();
    assert_eq!(turns(&own), turns(&other), "the same policy wrote the turns");
    assert!(own[0].samples.iter().any(|s| s.rerecognised == Some(meld("joy"))));
    assert!(other[0].samples.iter().all(|s| s.rerecognised == Some(meld("neutral"))), "the other policy heard them");
}
