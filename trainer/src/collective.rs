//! The processes a data-parallel run spans and the two collectives SELF-GRPO needs from them:
//! an element-wise sum of gradients (all-reduce) and an all-gather of each rank's rollouts.
//! [`Local`] is the one-process run; [`Threads`] the ranks of one process, a thread per device;
//! with the `mpi` feature, [`Mpi`] runs the same calls on an MPI communicator (OpenMPI, MPICH,
//! any launcher: `mpirun`, `srun`). No network collective of our own is written: the engine
//! (MPI, or NCCL through burn on CUDA) does the communication, this module only frames the bytes.

#[cfg(feature = "mpi")]
mod mpi_engine;

#[cfg(feature = "mpi")]
pub use mpi_engine::Mpi;

mod threads;

pub use threads::Threads;

use burn::tensor::Device;

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::Cell;
use std::time::Instant;

/// The ranks of a run and the collectives between them. Every rank makes the same calls in
/// the same order (the run's control flow is the same on each); a call returns on every rank
/// the same result.
pub trait Collective {
    /// This process's rank, from 0.
    fn rank(&self) -> usize;

    /// How many ranks the run spans.
    fn size(&self) -> usize;

    /// Replaces `values` by their element-wise sum over all ranks.
    fn sum_f32(&self, values: &mut [f32]);

    /// Every rank's `mine`, in rank order.
    fn gather_bytes(&self, mine: &[u8]) -> Vec<Vec<u8>>;

    /// Rank 0: the one that writes the run folder and prints.
    fn is_main(&self) -> bool {
        self.rank() == 0
    }

    /// Returns once every rank has called it.
    fn barrier(&self) {
        if self.size() > 1 {
            self.gather_bytes(&[]);
        }
    }

    /// The ranks' devices, in rank order, when the ranks are threads of one process whose
    /// gradients burn all-reduces on the devices themselves (NCCL on CUDA); `None`: gradients
    /// travel as host f32 through [`Collective::sum_f32`].
    fn device_group(&self) -> Option<&[Device]> {
        None
    }

    /// Records what a collective outside these calls moved (a device group's all-reduce: the
    /// bytes, and the seconds spent queueing it, the transfer itself running on the device),
    /// for a counting wrapper ([`Counted`]) to add to its traffic.
    fn note_device_traffic(&self, _bytes: u64, _seconds: f64) {}
}

/// A run in one process: sums and gathers are the identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct Local;

impl Collective for Local {
    fn rank(&self) -> usize {
        0
    }

    fn size(&self) -> usize {
        1
    }

    fn sum_f32(&self, _values: &mut [f32]) {}

    fn gather_bytes(&self, mine: &[u8]) -> Vec<Vec<u8>> {
        vec![mine.to_vec()]
    }
}

/// How many processes an MPI launcher started alongside this one, from the variables it sets
/// (`OMPI_COMM_WORLD_SIZE` by Open MPI's mpirun, `PMI_SIZE` by MPICH's and Slurm's PMI);
/// `None` when no launcher started it.
pub fn launcher_world_size() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"].iter().find_map(|v| std::env::var(v).ok()?.parse().ok())
}

/// This process's rank among the ranks on its node, from the variables launchers set (Open
/// MPI's `OMPI_COMM_WORLD_LOCAL_RANK`, Slurm's `SLURM_LOCALID`, MPICH's `MPI_LOCALRANKID`);
/// `None` when no launcher started it.
pub fn launcher_local_rank() -> Option<usize> {
    ["OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID"].iter().find_map(|v| std::env::var(v).ok()?.parse().ok())
}

/// The device a rank runs on: a bare `cuda` means one GPU per rank, `cuda:<local rank>`, when
/// a launcher started this process; any other name (`cpu`, `wgpu`, `cuda:1`) is every rank's.
pub fn rank_device(device: &str, local_rank: Option<usize>) -> String {
    match local_rank {
        Some(r) if device.trim().eq_ignore_ascii_case("cuda") => format!("cuda:{r}"),
        _ => device.to_string(),
    }
}

/// The device this rank of `c` runs on ([`rank_device`] with the launcher's local rank).
pub fn this_rank_device(device: &str, c: &dyn Collective) -> String {
    rank_device(device, (c.size() > 1).then(launcher_local_rank).flatten())
}

/// The share of `n` consecutive items that rank `rank` of `size` takes: contiguous, as even as
/// possible, earlier ranks first (`n` = 5 over 2 ranks: 0..2 and 2..5).
pub fn share(n: usize, rank: usize, size: usize) -> std::ops::Range<usize> {
    let size = size.max(1);
    (rank * n / size)..((rank + 1) * n / size)
}

/// Bytes and seconds a rank spent in collectives.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Traffic {
    /// Bytes this rank sent (its own part of every sum and gather).
    pub bytes: u64,
    /// Seconds inside the collective calls (waiting for slower ranks included).
    pub seconds: f64,
}

/// A collective that counts what passes through it.
pub struct Counted<'a> {
    inner: &'a dyn Collective,
    traffic: Cell<Traffic>,
}

impl<'a> Counted<'a> {
    /// Counts the traffic of `inner` from zero.
    pub fn new(inner: &'a dyn Collective) -> Self {
        Self { inner, traffic: Cell::new(Traffic::default()) }
    }

    /// What passed so far.
    pub fn traffic(&self) -> Traffic {
        self.traffic.get()
    }

    fn count<T>(&self, bytes: usize, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        let mut traffic = self.traffic.get();
        traffic.bytes += bytes as u64;
        traffic.seconds += t.elapsed().as_secs_f64();
        self.traffic.set(traffic);
        out
    }
}

impl Collective for Counted<'_> {
    fn rank(&self) -> usize {
        self.inner.rank()
    }

    fn size(&self) -> usize {
        self.inner.size()
    }

    fn sum_f32(&self, values: &mut [f32]) {
        self.count(std::mem::size_of_val(values), || self.inner.sum_f32(values));
    }

    fn gather_bytes(&self, mine: &[u8]) -> Vec<Vec<u8>> {
        self.count(mine.len(), || self.inner.gather_bytes(mine))
    }

    fn barrier(&self) {
        self.count(0, || self.inner.barrier());
    }

    fn device_group(&self) -> Option<&[Device]> {
        self.inner.device_group()
    }

    fn note_device_traffic(&self, bytes: u64, seconds: f64) {
        let mut traffic = self.traffic.get();
        traffic.bytes += bytes;
        traffic.seconds += seconds;
        self.traffic.set(traffic);
    }
}

/// Every rank's `mine`, concatenated in rank order: with [`share`], the whole list as one
/// process would have built it. Values travel as CBOR, which keeps every f64 bit for bit.
pub fn gather_concat<T: Serialize + DeserializeOwned>(c: &dyn Collective, mine: Vec<T>) -> Vec<T> {
    if c.size() == 1 {
        return mine;
    }
    let mut bytes = Vec::new();
    ciborium::into_writer(&mine, &mut bytes).expect("rollout values encode to CBOR");
    c.gather_bytes(&bytes)
        .iter()
        .flat_map(|b| ciborium::from_reader::<Vec<T>, _>(b.as_slice()).expect("every rank runs the same binary, so it decodes what it sent"))
        .collect()
}

/// `f` of this rank's [`share`] of `items`, every rank's results gathered in rank order: when
/// `f` maps each item on its own, what one process computing `f(items)` returns.
pub fn map_shares<I, T: Serialize + DeserializeOwned>(c: &dyn Collective, items: &[I], f: impl FnOnce(&[I]) -> Vec<T>) -> Vec<T> {
    gather_concat(c, f(&items[share(items.len(), c.rank(), c.size())]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_cuda_device_takes_the_ranks_gpu_on_its_node() {
        assert_eq!(rank_device("cuda", Some(3)), "cuda:3");
        assert_eq!(rank_device("CUDA", Some(0)), "cuda:0");
        assert_eq!(rank_device("cuda", None), "cuda", "one process: the config's device");
        assert_eq!(rank_device("cuda:1", Some(3)), "cuda:1", "a named GPU is every rank's");
        assert_eq!(rank_device("cpu", Some(2)), "cpu");
        assert_eq!(rank_device("wgpu", Some(1)), "wgpu");
    }

    #[test]
    fn shares_cover_every_item_once_in_order() {
        for n in 0..12 {
            for size in 1..5 {
                let ranges: Vec<_> = (0..size).map(|r| share(n, r, size)).collect();
                let items: Vec<usize> = ranges.iter().flat_map(|r| r.clone()).collect();
                assert_eq!(items, (0..n).collect::<Vec<_>>(), "n {n}, size {size}");
                let lens: Vec<usize> = ranges.iter().map(|r| r.len()).collect();
                assert!(lens.iter().max().unwrap() - lens.iter().min().unwrap() <= 1, "{lens:?}");
            }
        }
    }
}
