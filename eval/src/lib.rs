//! Evaluating SELF-EMO policies: the burn model behind selfplay's [`selfemo_selfplay::Policy`]
//! ([`policy`]), recognition prompts and their answers in generate and score mode
//! ([`recognition`], [`label_scoring`]), scores with scikit-learn semantics ([`scores`]),
//! per-target predictions ([`predictions`]), logit adjustment ([`calibration`]), the probes
//! ([`hallucination`], [`faithfulness`], [`steer_sweep`]) and charts ([`plots`]). It never
//! trains: no optimiser, no trainer.

pub mod calibration;
pub mod faithfulness;
pub mod hallucination;
pub mod label_scoring;
pub mod plots;
pub mod policy;
pub mod predictions;
pub mod recognition;
pub mod scores;
pub mod steer_sweep;
