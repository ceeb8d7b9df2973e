//! SELF-EMO self-play: the roles and their prompts. (Rollouts, re-recognition and the data
//! flywheel build on these.)

pub mod prompts;

pub use prompts::{FilledPrompt, RecogniserPrompt};
