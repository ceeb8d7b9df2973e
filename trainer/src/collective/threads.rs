//! The ranks of a run in one process, one thread each (`devices = ["cuda:0", "cuda:1", ...]`):
//! rollouts and flags travel through shared memory; gradients too on devices without a
//! collective engine, and through burn's all-reduce (NCCL) on CUDA ([`Threads::device_group`]).
//! Written here because it is a rendezvous of a few threads over a `Mutex` and a `Condvar`
//! (std's `Barrier` cannot be broken, and a rank that fails must not leave the others waiting).

use super::Collective;
use burn::tensor::Device;
use std::sync::{Arc, Condvar, Mutex};

/// One rank of an in-process world (from [`Threads::world`]). A gather writes this rank's
/// slot, waits until every rank has written, and reads every slot. Dropping a rank (its thread
/// returned or unwound) stops the world: a rank waiting in a collective, or entering one
/// later, panics with the rank that left, instead of waiting forever.
pub struct Threads {
    rank: usize,
    shared: Arc<World>,
    devices: Option<Arc<[Device]>>,
}

struct World {
    state: Mutex<Round>,
    changed: Condvar,
}

/// The rendezvous in progress: the slots of this round, how many ranks wrote, how many have
/// read the previous round's result, and the first rank that left.
struct Round {
    slots: Vec<Option<Vec<u8>>>,
    written: usize,
    result: Arc<Vec<Vec<u8>>>,
    generation: u64,
    left: Option<usize>,
}

impl Threads {
    /// `size` ranks, rank r at index r, to be moved each into its own thread. With
    /// `device_group` (one device per rank, in rank order), [`Collective::device_group`] names
    /// them, and gradients are summed on the devices by burn's all-reduce.
    pub fn world(size: usize, device_group: Option<Vec<Device>>) -> Vec<Threads> {
        assert!(device_group.as_ref().is_none_or(|d| d.len() == size), "one device per rank");
        let shared = Arc::new(World {
            state: Mutex::new(Round { slots: vec![None; size], written: 0, result: Arc::new(Vec::new()), generation: 0, left: None }),
            changed: Condvar::new(),
        });
        let devices: Option<Arc<[Device]>> = device_group.map(Into::into);
        (0..size).map(|rank| Threads { rank, shared: shared.clone(), devices: devices.clone() }).collect()
    }
}

impl Collective for Threads {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner()).slots.len()
    }

    fn sum_f32(&self, values: &mut [f32]) {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let all = self.gather_bytes(&bytes);
        for (i, v) in values.iter_mut().enumerate() {
            *v = all.iter().map(|b| f32::from_le_bytes(b[4 * i..4 * i + 4].try_into().expect("4 bytes"))).fold(0.0, |a, x| a + x);
        }
    }

    fn gather_bytes(&self, mine: &[u8]) -> Vec<Vec<u8>> {
        let mut round = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        let stopped = |r: &Round| r.left.map(|left| format!("rank {left} of the run's {} threads stopped; rank {} stops too", r.slots.len(), self.rank));
        if let Some(why) = stopped(&round) {
            panic!("{why}");
        }
        round.slots[self.rank] = Some(mine.to_vec());
        round.written += 1;
        let generation = round.generation;
        if round.written == round.slots.len() {
            round.result = Arc::new(round.slots.iter_mut().map(|s| s.take().expect("every rank wrote")).collect());
            round.written = 0;
            round.generation += 1;
            self.shared.changed.notify_all();
        } else {
            while round.generation == generation {
                if let Some(why) = stopped(&round) {
                    panic!("{why}");
                }
                round = self.shared.changed.wait(round).unwrap_or_else(|e| e.into_inner());
            }
        }
        // A round's result is replaced only when every rank has written again, which this rank
        // has not yet done: it is still this round's.
        round.result.as_ref().clone()
    }

    fn device_group(&self) -> Option<&[Device]> {
        self.devices.as_deref()
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        let mut round = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        round.left.get_or_insert(self.rank);
        self.shared.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rank_gets_every_ranks_bytes_and_sums_in_rank_order() {
        let results: Vec<(Vec<Vec<u8>>, Vec<f32>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = Threads::world(3, None)
                .into_iter()
                .map(|rank| {
                    scope.spawn(move || {
                        let r = rank.rank() as u8;
                        let mut last = Vec::new();
                        for round in 0..50u8 {
                            last = rank.gather_bytes(&vec![r; (r + round) as usize % 4]);
                        }
                        let mut values = vec![rank.rank() as f32, 1.0];
                        rank.sum_f32(&mut values);
                        (last, values)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (last, sum) in &results {
            assert_eq!(last, &vec![vec![0; 1], vec![1; 2], vec![2; 3]], "round 49's bytes of every rank, in rank order");
            assert_eq!(sum, &vec![3.0, 3.0]);
        }
    }

    #[test]
    fn a_rank_that_leaves_stops_the_others_instead_of_hanging_them() {
        let mut world = Threads::world(2, None);
        let waiting = world.pop().unwrap();
        let leaving = world.pop().unwrap();
        let handle = std::thread::spawn(move || waiting.gather_bytes(b"x"));
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(leaving);
        let panic = handle.join().expect_err("the waiting rank stops");
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains("rank 0 of the run's 2 threads stopped"), "{message}");
    }
}
