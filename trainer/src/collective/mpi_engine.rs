//! [`Collective`] on MPI's world communicator (rsmpi). MPI's default error handler is
//! `MPI_ERRORS_ARE_FATAL` and launchers end the whole job when one rank dies, so a lost rank
//! stops every rank instead of leaving them waiting.

use super::Collective;
use mpi::datatype::PartitionMut;
use mpi::environment::Universe;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::CommunicatorCollectives;

/// Elements per all-reduce call: MPI counts are C ints, so a model's gradients (billions of
/// values) are summed in slices of this many.
const SLICE: usize = 1 << 28;

/// The MPI world of this process, initialised once; dropping it finalises MPI.
pub struct Mpi {
    // Declared before `_universe` so the communicator is released before MPI_Finalize.
    world: SimpleCommunicator,
    _universe: Universe,
}

impl Mpi {
    /// Initialises MPI (a process started without a launcher is a world of one); `None` when
    /// MPI was already initialised in this process.
    pub fn init() -> Option<Self> {
        let universe = mpi::initialize()?;
        Some(Self { world: universe.world(), _universe: universe })
    }
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        self.world.size() as usize
    }

    fn sum_f32(&self, values: &mut [f32]) {
        for chunk in values.chunks_mut(SLICE) {
            let mine = chunk.to_vec();
            self.world.all_reduce_into(&mine[..], chunk, mpi::collective::SystemOperation::sum());
        }
    }

    fn barrier(&self) {
        self.world.barrier();
    }

    fn gather_bytes(&self, mine: &[u8]) -> Vec<Vec<u8>> {
        let n = self.size();
        let mut counts = vec![0i32; n];
        let len = i32::try_from(mine.len()).expect("a rank's rollouts fit in 2 GiB");
        self.world.all_gather_into(&len, &mut counts[..]);
        if counts.iter().all(|c| *c == 0) {
            return vec![Vec::new(); n]; // MPI rejects a gather of nothing into an empty buffer
        }
        let displs: Vec<i32> = counts.iter().scan(0i32, |at, c| Some(std::mem::replace(at, *at + c))).collect();
        let mut all = vec![0u8; counts.iter().map(|c| *c as usize).sum()];
        {
            let mut partition = PartitionMut::new(&mut all[..], &counts[..], &displs[..]);
            self.world.all_gather_varcount_into(mine, &mut partition);
        }
        let mut out = Vec::with_capacity(n);
        let mut rest = all.as_slice();
        for c in counts {
            let (head, tail) = rest.split_at(c as usize);
            out.push(head.to_vec());
            rest = tail;
        }
        out
    }
}
