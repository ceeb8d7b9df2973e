//! `selfemo bench`: throughput against the matmul peak measured in the same run, of the model
//! alone ([`model`]) and of the training loop's own self-play step ([`train`]).

pub mod model;
pub mod train;
