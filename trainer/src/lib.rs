//! SELF-GRPO training: the loss ([`loss`]), optimiser pieces with PyTorch semantics
//! ([`optim`]), and rollout + update over explicit groups ([`grpo`]). The `selfemo` binary
//! lives beside this library.

pub mod grpo;
pub mod loss;
pub mod optim;
pub mod scores;
