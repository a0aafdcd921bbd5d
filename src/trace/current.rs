//! The trace id of the request whose futures this thread is polling, for its log lines
//! (docs/spec.md §13: every log line of a traced request carries its `trace_id`). A traced
//! request's futures are wrapped in [`InTrace`], which sets it around each poll and around
//! the drop (a cancelled run logs as it is dropped); the log formatter
//! (`telemetry`) reads it with [`trace_id`] when, and only when, a line is written.
//!
//! Why not a `tracing` span with a `trace_id` field: making one formats the field and
//! registers the span, and every poll enters and exits it: ~6,000 instructions per run, a
//! fifth of what tracing costs a run, for log lines a successful run does not write.

use std::cell::Cell;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::task::{Context, Poll};

thread_local! {
    static CURRENT: Cell<Option<[u8; 16]>> = const { Cell::new(None) };
}

/// The trace id of the request being polled on this thread, as 32 hex digits.
pub(crate) fn trace_id() -> Option<super::span::TraceIdHex> {
    CURRENT.get().map(|id| super::span::TraceIdHex::new(&id))
}

/// Sets the current trace id until dropped, then puts back the one before.
struct Entered(Option<[u8; 16]>);

impl Entered {
    fn new(trace_id: [u8; 16]) -> Entered {
        Entered(CURRENT.replace(Some(trace_id)))
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        CURRENT.set(self.0);
    }
}

/// A future polled (and dropped) with its trace id current.
pub(crate) struct InTrace<F> {
    trace_id: [u8; 16],
    // Dropped by hand in `Drop`, with the trace id current.
    inner: ManuallyDrop<F>,
}

impl<F> InTrace<F> {
    /// `inner`, logging as part of trace `trace_id`.
    pub(crate) fn new(trace_id: [u8; 16], inner: F) -> Self {
        InTrace {
            trace_id,
            inner: ManuallyDrop::new(inner),
        }
    }
}

impl<F: Future> Future for InTrace<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `inner` is pinned with `self`: it is never moved out of `self`, and it is
        // dropped in place (in `Drop`), so this projection keeps the pinning guarantee.
        let this = unsafe { self.get_unchecked_mut() };
        let _entered = Entered::new(this.trace_id);
        unsafe { Pin::new_unchecked(&mut *this.inner) }.poll(cx)
    }
}

impl<F> Drop for InTrace<F> {
    fn drop(&mut self) {
        let _entered = Entered::new(self.trace_id);
        // SAFETY: `inner` is dropped once, here, in place, and not used afterwards.
        unsafe { ManuallyDrop::drop(&mut self.inner) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::TraceIdHex;

    #[test]
    fn the_trace_id_is_current_while_polled_and_dropped_and_restored_after() {
        struct LogsOnDrop(std::rc::Rc<Cell<Option<Option<String>>>>);
        impl Drop for LogsOnDrop {
            fn drop(&mut self) {
                self.0.set(Some(trace_id().map(|id| id.to_string())));
            }
        }
        let outer = [0xab; 16];
        let inner = [0x01; 16];
        let seen_on_drop = std::rc::Rc::new(Cell::new(None));
        let dropped = LogsOnDrop(seen_on_drop.clone());
        let future = InTrace::new(outer, async move {
            let _keep = &dropped;
            let nested = InTrace::new(inner, async { trace_id() }).await;
            (nested, trace_id())
        });
        assert_eq!(trace_id(), None);
        let (nested, after) = futures_util::FutureExt::now_or_never(future).unwrap();
        assert_eq!(
            nested.as_ref().map(TraceIdHex::as_str),
            Some("01".repeat(16).as_str())
        );
        assert_eq!(
            after.as_ref().map(TraceIdHex::as_str),
            Some("ab".repeat(16).as_str())
        );
        assert_eq!(trace_id(), None, "restored after the poll");
        assert_eq!(
            seen_on_drop.take(),
            Some(Some("ab".repeat(16))),
            "current while dropped"
        );
        // Dropped before it ran to the end: still current while dropped.
        let seen = std::rc::Rc::new(Cell::new(None));
        let logs = LogsOnDrop(seen.clone());
        drop(InTrace::new(outer, async move {
            let _keep = &logs;
        }));
        assert_eq!(seen.take(), Some(Some("ab".repeat(16))));
        assert_eq!(trace_id(), None);
    }
}
