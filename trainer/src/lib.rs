//! SELF-GRPO training as a library: the run config ([`config`]), the loss ([`loss`]),
//! optimiser pieces with PyTorch semantics ([`optim`], [`adamw`]), the update over explicit groups
//! ([`grpo`]), what trains ([`trainable`]), supervised passes ([`warm_start`]), the train
//! split's pools and draws ([`splits`]), one self-play step ([`step`]), the run loop
//! ([`run`]) with its evaluations ([`evaluation`]), checkpoints ([`checkpoint`]) and files
//! ([`run_dir`], [`metrics_log`]). The `selfemo` binary lives in selfemo-cli.

pub mod adamw;
pub mod checkpoint;
pub mod collective;
pub mod config;
mod devices;
pub mod error;
pub mod evaluation;
pub mod grpo;
pub mod loss;
pub mod metrics_log;
pub mod optim;
pub mod overrides;
pub mod run;
pub mod run_dir;
pub mod self_play;
mod session;
pub mod sharded;
pub mod splits;
pub mod step;
pub mod trainable;
pub mod warm_start;
