//! The processes a command runs on: one, or the ranks an MPI launcher (`mpirun -np N`, `srun`)
//! started, which share the work and leave printing and writing to rank 0.

use anyhow::Result;
use selfemo_trainer::collective::{Collective, share};

/// This process's ranks: the MPI world (a world of one without a launcher).
#[cfg(feature = "mpi")]
pub fn ranks() -> Result<Box<dyn Collective>> {
    let world = selfemo_trainer::collective::Mpi::init().ok_or_else(|| anyhow::anyhow!("MPI was already initialised in this process"))?;
    Ok(Box::new(world))
}

/// This process alone; an error when an MPI launcher started it as one of several ranks.
#[cfg(not(feature = "mpi"))]
pub fn ranks() -> Result<Box<dyn Collective>> {
    match selfemo_trainer::collective::launcher_world_size() {
        Some(n) if n > 1 => anyhow::bail!(
            "started by an MPI launcher as one of {n} processes, but this selfemo was built without the `mpi` feature \
             (cargo build --release --features mpi; see README, Scaling out)"
        ),
        _ => Ok(Box::new(selfemo_trainer::collective::Local)),
    }
}

/// A bar with the count, rate and ETA on stderr over this rank's share of `total` targets,
/// drawn by rank 0 alone.
pub fn progress_bar(ranks: &dyn Collective, name: &str, total: usize) -> indicatif::ProgressBar {
    if !ranks.is_main() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(share(total, 0, ranks.size()).len() as u64);
    let style = indicatif::ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} targets  {per_sec}  eta {eta}").expect("a valid template");
    bar.set_style(style);
    bar.set_prefix(name.to_string());
    bar
}

/// Rank 0 writes the JSON report and says where; the other ranks write nothing.
pub fn write_reports(ranks: &dyn Collective, out: &std::path::Path, reports: &serde_json::Map<String, serde_json::Value>) -> Result<()> {
    if ranks.is_main() {
        crate::report::write_json(out, reports)?;
        println!("wrote {}", out.display());
    }
    Ok(())
}
