//! Load shedding: at most `--max-in-flight` connector runs at once over all workers. A run
//! over the cap is answered 503 `OVERLOADED` at once — never queued — so a slow upstream
//! cannot pile up unbounded work (memory, sockets, caller time-outs) in the runtime.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::error::Code;
use crate::run::input::RequestError;

/// Seconds a shed caller is told to wait (`Retry-After` and `params`).
pub(crate) const RETRY_AFTER_SECS: u32 = 1;

/// The count of runs in flight, shared by every worker, and its cap.
#[derive(Debug, Clone)]
pub struct RunSlots {
    in_flight: Arc<AtomicUsize>,
    /// Most runs at once; 0 = no limit.
    cap: usize,
}

/// A run's place under the cap; freed when dropped, however the run ends (including when
/// the caller goes away and the handler's future is dropped).
#[derive(Debug)]
pub(crate) struct RunSlot(Arc<AtomicUsize>);

impl Drop for RunSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl RunSlots {
    /// At most `cap` runs at once (0 = no limit).
    pub fn new(cap: usize) -> Self {
        RunSlots {
            in_flight: Arc::new(AtomicUsize::new(0)),
            cap,
        }
    }

    /// A slot, or `None` when `cap` runs are already in flight. Never waits.
    pub(crate) fn try_acquire(&self) -> Option<RunSlot> {
        let cap = if self.cap == 0 { usize::MAX } else { self.cap };
        // Compare-and-swap, so concurrent callers can never take more than `cap` slots.
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            })
            .ok()
            .map(|_| RunSlot(self.in_flight.clone()))
    }

    /// The cap (0 = no limit).
    pub(crate) fn cap(&self) -> usize {
        self.cap
    }

    /// Runs in flight now.
    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }
}

/// The refusal of a run over the cap: 503 `OVERLOADED`, `params: ["retry_after=1"]` (the
/// envelope adds the `Retry-After` header).
pub(crate) fn overloaded(cap: usize) -> RequestError {
    RequestError::new(
        Code::Overloaded,
        format!("the runtime is running its maximum of {cap} connector runs; retry shortly"),
    )
    .with_params(vec![format!("retry_after={RETRY_AFTER_SECS}")])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_and_freed_on_drop() {
        let slots = RunSlots::new(2);
        let a = slots.try_acquire().unwrap();
        let _b = slots.try_acquire().unwrap();
        assert!(slots.try_acquire().is_none());
        assert_eq!(slots.in_flight(), 2);
        drop(a);
        assert!(slots.try_acquire().is_some());
        assert_eq!(slots.in_flight(), 1);
        let unlimited = RunSlots::new(0);
        let held: Vec<_> = (0..1000)
            .map(|_| unlimited.try_acquire().unwrap())
            .collect();
        assert_eq!(unlimited.in_flight(), held.len());
    }
}
