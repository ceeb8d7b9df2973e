//! Which parameters train: all of them, the top decoder layers and the final norm, or LoRA
//! adapters on chosen projections of every layer (the rest frozen).

use crate::config::Trainable;
use burn::module::{Lora, Module, ParamGroup};
use selfemo_model::CausalLm;

/// Freezes what does not train (and attaches LoRA adapters, initialised from `seed`).
pub fn apply_trainable(model: CausalLm, trainable: &Trainable, seed: u64) -> CausalLm {
    match trainable {
        Trainable::All => model,
        Trainable::Lora { rank, alpha, targets } => {
            let paths: Vec<String> = (0..model.num_layers())
                .flat_map(|l| {
                    targets.iter().map(move |t| {
                        let block = if ["gate_proj", "up_proj", "down_proj"].contains(&t.as_str()) { "mlp" } else { "self_attn" };
                        format!("model.layers.{l}.{block}.{t}.weight")
                    })
                })
                .collect();
            model.model.embed_tokens.weight.device().seed(seed);
            model.apply_lora(Lora::new(*rank, *alpha).set_param_group(ParamGroup::from_paths(paths)))
        }
        Trainable::TopLayers { layers } => {
            let mut m = model.freeze();
            let n = m.model.layers.len();
            let layers_vec = std::mem::take(&mut m.model.layers);
            m.model.layers = layers_vec.into_iter().enumerate().map(|(i, l)| if i + layers >= n { l.unfreeze() } else { l }).collect();
            m.model.norm = m.model.norm.unfreeze();
            m
        }
    }
}

/// `model` with its LoRA adapters merged into the weights and fresh ones attached (B = 0, so
/// the function is unchanged; A initialised from `seed`): what trains next starts from zero
/// adapters on the merged model. Other trainable sets are returned as they are.
pub fn restart_adapters(model: CausalLm, trainable: &Trainable, seed: u64) -> CausalLm {
    match trainable {
        Trainable::Lora { .. } => apply_trainable(model.materialize(), trainable, seed),
        Trainable::All | Trainable::TopLayers { .. } => model,
    }
}
