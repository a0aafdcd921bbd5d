//! The lock of a span's message and of a thread's piece of the export: both are taken by one
//! thread nearly always (the run's worker; the export thread once per batch delay), for a
//! few instructions. The piece's lock is never held across another lock; a span's is held
//! while its message goes into the piece and, when the piece is full, while the piece is
//! queued under the exporter's shared `std` mutex (a short wait at worst, and only another
//! thread ending the same span at that moment would be kept waiting).
//!
//! Why not `std::sync::Mutex`: its unlock swaps the lock word (a locked instruction, a full
//! barrier) to learn whether a waiter must be woken, and the barrier waits for every store
//! before it: the span's freshly written bytes. Under load (perf, scenario A traced) that
//! unlock was most of `trace::end`'s time. A spin lock releases with a plain store; one that
//! finds it taken yields the thread instead of spinning, so a holder that was preempted gets
//! the core back.

/// A lock whose unlock is a plain store; a waiter yields its thread.
pub(crate) type Lock<T> = spin::mutex::SpinMutex<T, spin::relax::Yield>;
