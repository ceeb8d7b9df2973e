//! The tiny run the resume tests share (the real default model cut to 2 layers).
#![allow(dead_code)]

use selfemo_trainer::config::RunConfig;
use std::path::Path;

/// The tiny run named `name` under `dir`; `None` (the test skips) without the default model.
pub fn config(dir: &Path, name: &str) -> Option<RunConfig> {
    config_with(dir, name, "")
}

/// The tiny run, with `data` lines added to its [data] section.
pub fn config_with(dir: &Path, name: &str, data: &str) -> Option<RunConfig> {
    selfemo_model::fetch::default_model_for_tests()?;
    let text = format!(
        "name = \"{name}\"\noutput_dir = \"{}\"\nseed = 3\n[model]\nmax_layers = 2\ntrainable = {{ kind = \"top_layers\", layers = 1 }}\n\
         [data]\ncontext_window = 1\nmax_prompt_tokens = 120\n{data}\n\
         [grpo]\nnum_generations = 2\nprompts_per_step = 2\nmax_steps = 4\nmax_completion_length = 6\nlearning_rate = 1e-3\nsave_steps = 2\ntemperature = 1.5\n\
         [eval]\ndev_limit = 2\nmax_new_tokens = 4\ntest_limit = 2\n\
         [prompt]\nreply_prefix = \"<think>x</think><answer>\"\n[warm_start]\nsteps = 2\nbatch_size = 2\nlearning_rate = 3e-3\n",
        dir.display()
    );
    let c: RunConfig = toml::from_str(&text).unwrap();
    c.validate().unwrap();
    Some(c)
}
