//! The run configs the repository ships (configs/, the ablation's arms and the speed
//! experiment's) load and validate against today's schema, so a renamed or removed field cannot
//! leave them stale (the GPU ones, in a build without their feature, all but their device);
//! and `selfemo train --set` overrides read as the file they stand for.

use selfemo_trainer::config::RunConfig;
use std::path::{Path, PathBuf};

fn tomls(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(tomls(&path));
        } else if path.extension().is_some_and(|e| e == "toml") {
            found.push(path);
        }
    }
    found
}

#[test]
fn every_shipped_config_loads_and_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let configs: Vec<PathBuf> = ["configs", "experiments/008-ablation", "experiments/009-train-speed"].iter().flat_map(|d| tomls(&root.join(d))).collect();
    assert!(configs.iter().any(|p| p.ends_with("configs/quickstart.toml")), "{configs:?}");
    assert!(configs.iter().any(|p| p.ends_with("configs/qwen3-8b-cuda.toml")), "{configs:?}");
    for path in &configs {
        match RunConfig::load(path) {
            Ok(_) => {}
            // A GPU config in a build without that feature: all but the device must validate.
            Err(e) if e.contains("needs selfemo built with") => {
                let mut c: RunConfig = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
                c.device = "cpu".into();
                c.validate().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn set_overrides_reproduce_the_config_a_seed_1_run_recorded() {
    // The seed-1 arm's run folder holds the resolved config.toml the run wrote; the seed-0 file
    // with two overrides must read as exactly that config.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("experiments/008-ablation");
    let set = ["seed=1", "name=b-sft-30-emorynlp-seed1"].map(String::from);
    let overridden = RunConfig::load_with(&dir.join("b-sft-30-emorynlp.toml"), &set).unwrap();
    let written = RunConfig::load(&dir.join("results/b-sft-30-emorynlp-seed1/config.toml")).unwrap();
    assert_eq!(toml::to_string(&overridden).unwrap(), toml::to_string(&written).unwrap());
    let base = RunConfig::load(&dir.join("b-sft-30-emorynlp.toml")).unwrap();
    assert_ne!(toml::to_string(&base).unwrap(), toml::to_string(&written).unwrap());
}

#[test]
fn bad_set_overrides_name_the_file_and_the_field() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("configs/quickstart.toml");
    let err = |set: &str| RunConfig::load_with(&path, &[set.to_string()]).unwrap_err();
    let e = err("grpo.num_generatons=8");
    assert!(e.contains("quickstart.toml") && e.contains("unknown field `num_generatons`"), "{e}");
    let e = err("seed=abc");
    assert!(e.contains("quickstart.toml") && e.contains("--set seed=abc"), "{e}");
    let e = err("grpo.num_generations=1");
    assert!(e.contains("grpo.num_generations"), "{e}");
}
