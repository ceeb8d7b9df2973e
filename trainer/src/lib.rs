//! SELF-GRPO training: the loss ([`loss`]), optimiser pieces with PyTorch semantics
//! ([`optim`]), and rollout + update over explicit groups ([`grpo`]). The `selfemo` binary
//! lives beside this library.

pub mod calibration;
pub mod config;
pub mod evaluation;
pub mod faithfulness;
pub mod checkpoint;
pub mod grpo;
pub mod hallucination;
pub mod label_scoring;
pub mod loss;
pub mod metrics_log;
pub mod optim;
pub mod policy;
pub mod predictions;
pub mod plots;
pub mod recognition;
pub mod run;
pub mod run_dir;
pub mod scores;
pub mod self_play;
pub mod splits;
pub mod steer_sweep;
pub mod step;
pub mod trainable;
pub mod warm_start;
