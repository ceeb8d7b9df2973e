//! SELF-EMO self-play: one policy plays the recogniser and the responder; its rollouts are
//! scored, re-recognised and filtered into the data flywheel that feeds the next iteration.
//! Written against the [`Policy`] trait, so the logic is tested with a scripted fake.

pub mod config;
pub mod fake;
pub mod flywheel;
pub mod items;
pub mod judge;
pub mod policy;
pub mod prompts;
pub mod rationale;
pub mod rollout;
pub mod store;

pub use config::{Rerecogniser, SelfPlayConfig};
pub use flywheel::{FilterCounts, Flywheel, FlywheelConfig, FlywheelRow, Kind};
pub use items::{EmotionDraw, ExpressionItem, RecognitionItem, TargetEmotion, source_name};
pub use judge::{JudgePrompt, PolicyVerifier};
pub use policy::{Completion, Policy, sample_seed};
pub use prompts::{FilledPrompt, RecogniserPrompt, ResponderPrompt};
pub use rationale::{Rationale, Verdict, rationales};
pub use rollout::{ExpressionGroup, RecognitionGroup, Roles, recognise, respond};
