//! Checkpoints: `checkpoints/step-N/` holds the model (burnpack, ParamIds kept so optimiser
//! state matches), the optimiser state and `state.json` (step, metrics so far). Written to a
//! temporary folder, renamed into place, then the `latest` marker (for people) is replaced: a run
//! killed at any moment leaves the previous checkpoint whole.

use crate::error::{AtPath, Result, TrainError};
use crate::metrics_log::Row;
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::{BurnpackStore, ModuleSnapshot};
use selfemo_model::CausalLm;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What a checkpoint remembers besides tensors.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct State {
    /// Optimiser steps done; the data cursor and every seed derive from it.
    pub step: u64,
    /// Metric rows up to `step`.
    pub rows: Vec<Row>,
}

/// Writes `dir/checkpoints/step-N` and points `latest` at it.
pub fn save(run_dir: &Path, model: &CausalLm, optim: &ModuleOptimizer, state: &State) -> Result<PathBuf> {
    let root = run_dir.join("checkpoints");
    std::fs::create_dir_all(&root).at(&root)?;
    let name = format!("step-{}", state.step);
    let tmp = root.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).at(&tmp)?;
    model.save_into(&mut BurnpackStore::from_file(tmp.join("model.bpk")).overwrite(true)).at(&tmp.join("model.bpk"))?;
    optim.save(tmp.join("optimizer.bpk")).at(&tmp.join("optimizer.bpk"))?;
    let json = serde_json::to_vec(state).at(&tmp.join("state.json"))?;
    std::fs::write(tmp.join("state.json"), json).at(&tmp.join("state.json"))?;
    let dir = root.join(&name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir).at(&dir)?;
    selfemo_datasets::atomic::write_atomically(&root.join("latest"), |f| std::io::Write::write_all(f, name.as_bytes())).at(&root.join("latest"))?;
    Ok(dir)
}

/// The newest whole checkpoint: the highest `step-N` folder with its `state.json` (folders are
/// renamed into place only when complete, so a run killed at any moment, even before the
/// `latest` marker was rewritten, resumes from the newest checkpoint it finished).
pub fn latest(run_dir: &Path) -> Option<PathBuf> {
    let root = run_dir.join("checkpoints");
    std::fs::read_dir(&root)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step: u64 = name.strip_prefix("step-")?.parse().ok()?;
            e.path().join("state.json").is_file().then_some((step, e.path()))
        })
        .max_by_key(|(step, _)| *step)
        .map(|(_, dir)| dir)
}

/// Restores model weights (and ParamIds), optimiser state and [`State`] from `dir`.
pub fn load(dir: &Path, model: CausalLm, optim: ModuleOptimizer) -> Result<(CausalLm, ModuleOptimizer, State)> {
    let model = load_weights(dir, model)?;
    let optim = optim.load(dir.join("optimizer.bpk")).at(&dir.join("optimizer.bpk"))?;
    let path = dir.join("state.json");
    let state: State = serde_json::from_slice(&std::fs::read(&path).at(&path)?).at(&path)?;
    Ok((model, optim, state))
}

/// Restores only the model weights of the checkpoint in `dir` into `model`, which must have the
/// run's structure (the same trainable set: LoRA adapters included).
pub fn load_weights(dir: &Path, mut model: CausalLm) -> Result<CausalLm> {
    let weights = dir.join("model.bpk");
    let result = model.load_from(&mut BurnpackStore::from_file(&weights)).at(&weights)?;
    if !result.missing.is_empty() {
        return Err(TrainError::File { path: weights, message: format!("the checkpoint lacks {:?}", result.missing) });
    }
    Ok(model)
}

/// The frozen KL reference of the run in `run_dir`: at step 0, `policy` as it is (after any
/// warm start), written to `reference.bpk` (a temporary name, then renamed) when `write`; on a
/// resumed run (step > 0), the saved one, loaded into `policy`'s structure.
pub fn reference(run_dir: &Path, policy: &CausalLm, step: u64, write: bool) -> Result<CausalLm> {
    let path = run_dir.join("reference.bpk");
    let mut reference = policy.valid();
    if step == 0 && !write {
        return Ok(reference);
    }
    if step == 0 {
        let tmp = run_dir.join(format!(".reference.bpk.tmp-{}", std::process::id()));
        reference.save_into(&mut BurnpackStore::from_file(&tmp).overwrite(true)).at(&tmp)?;
        std::fs::rename(&tmp, &path).at(&path)?;
    } else {
        let missing = |message: String| TrainError::File { path: path.clone(), message };
        if !path.is_file() {
            return Err(missing("the run's frozen reference is missing, so it cannot resume".into()));
        }
        let result = reference.load_from(&mut BurnpackStore::from_file(&path)).at(&path)?;
        if !result.missing.is_empty() {
            return Err(missing(format!("the reference lacks {:?}", result.missing)));
        }
    }
    Ok(reference)
}
