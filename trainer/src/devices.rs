//! A run over several devices of one process (`devices = ["cuda:0", "cuda:1", ...]`): one
//! thread per device, each a rank of an in-process world ([`Threads`]) running [`train`] on its
//! share of every step, as MPI ranks do; rank 0 writes the run folder. On CUDA the gradients
//! are summed on the devices by burn's all-reduce (NCCL, whose communicator burn starts on the
//! first call); on other devices through memory.

use crate::collective::{Collective, Threads};
use crate::config::RunConfig;
use crate::error::{Result, TrainError};
use crate::run::{Outcome, TrainOptions, train};
use burn::tensor::Device;
use selfemo_model::parse_device;

/// [`train`] with one thread per entry of `config.devices`; returns rank 0's outcome, or the
/// error of the rank that failed first (the others then stop at their next collective).
pub(crate) fn train_on_devices(config: &RunConfig, options: TrainOptions) -> Result<Outcome> {
    if options.collective.is_some_and(|c| c.size() > 1) {
        return Err(TrainError::Config(
            "devices: a run over several devices of one process cannot also be one of several MPI ranks; use `devices` or a launcher".into(),
        ));
    }
    let devices: Vec<Device> =
        config.devices.iter().enumerate().map(|(i, d)| parse_device(d).map_err(|e| TrainError::Config(format!("devices[{i}]: {e}")))).collect::<Result<_>>()?;
    let on_cuda = config.devices.iter().all(|d| d.trim().to_ascii_lowercase().starts_with("cuda"));
    let world = Threads::world(devices.len(), on_cuda.then_some(devices));
    let results: Vec<std::thread::Result<Result<Outcome>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = world
            .into_iter()
            .zip(&config.devices)
            .map(|(rank, device)| {
                let progress = options.progress.filter(|_| rank.is_main());
                let (resume, stop_after) = (options.resume, options.stop_after);
                scope.spawn(move || train(config, TrainOptions { resume, stop_after, progress, collective: Some(&rank), device: Some(device) }))
            })
            .collect();
        handles.into_iter().map(|h| h.join()).collect()
    });
    first_failure(results, &config.devices)
}

/// Rank 0's outcome when every rank succeeded; else the first rank's own error in rank order,
/// else the first panic that is not another rank's stop ([`Threads`] stops the survivors with
/// a panic naming the rank that left).
fn first_failure(results: Vec<std::thread::Result<Result<Outcome>>>, devices: &[String]) -> Result<Outcome> {
    let message = |p: &(dyn std::any::Any + Send)| {
        p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_else(|| "a panic without a message".into())
    };
    let mut panics = Vec::new();
    let mut outcomes = Vec::new();
    for (rank, result) in results.into_iter().enumerate() {
        match result {
            Ok(Ok(outcome)) => outcomes.push(outcome),
            Ok(Err(e)) => return Err(e),
            Err(p) => panics.push(format!("rank {rank} on {}: {}", devices[rank], message(p.as_ref()))),
        }
    }
    if let Some(first) = panics.iter().find(|p| !p.contains("stops too")).or(panics.first()) {
        return Err(TrainError::DeviceThread(first.clone()));
    }
    Ok(outcomes.swap_remove(0))
}
