//! A counted cap without a lock: at most `max` holders at once, and a taker
//! beyond it is refused at once instead of waiting. The HTTP intake caps
//! in-flight requests and concurrent sync runs with it, on every request,
//! so taking and giving back a slot is one atomic operation each (a tokio
//! semaphore locks its waiter list on every release).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// At most `max` [`Slot`]s taken at once.
#[derive(Debug)]
pub struct Slots {
    taken: AtomicUsize,
    max: usize,
}

impl Slots {
    /// A cap of `max` slots (0 refuses every taker).
    pub fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            taken: AtomicUsize::new(0),
            max,
        })
    }

    /// Takes a slot, or `None` when all `max` are taken. The slot is given
    /// back when the [`Slot`] is dropped.
    pub fn try_take(self: &Arc<Self>) -> Option<Slot> {
        // A compare-and-swap rather than add-then-undo: a refused taker
        // never counts, so it cannot make another one fail meanwhile. The
        // count publishes no data, hence relaxed ordering.
        self.taken
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(Arc::clone(self)))
    }

    /// How many slots are taken now.
    pub fn taken(&self) -> usize {
        self.taken.load(Ordering::Relaxed)
    }
}

/// One taken slot of a [`Slots`], given back on drop.
#[derive(Debug)]
pub struct Slot(Arc<Slots>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.taken.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_max_are_taken_and_a_dropped_slot_is_free_again() {
        let slots = Slots::new(2);
        let a = slots.try_take().unwrap();
        let b = slots.try_take().unwrap();
        assert!(slots.try_take().is_none());
        assert!(slots.try_take().is_none(), "a refusal takes nothing");
        assert_eq!(slots.taken(), 2);
        drop(a);
        let c = slots.try_take().unwrap();
        assert!(slots.try_take().is_none());
        drop((b, c));
        assert_eq!(slots.taken(), 0);
    }

    #[test]
    fn a_cap_of_zero_refuses_everyone() {
        assert!(Slots::new(0).try_take().is_none());
    }

    #[test]
    fn concurrent_takers_never_exceed_the_cap() {
        let slots = Slots::new(3);
        let peak = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (slots, peak) = (slots.clone(), peak.clone());
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        if let Some(slot) = slots.try_take() {
                            peak.fetch_max(slots.taken(), Ordering::Relaxed);
                            drop(slot);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(peak.load(Ordering::Relaxed) <= 3);
        assert_eq!(slots.taken(), 0);
    }
}
