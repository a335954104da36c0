//! The epoch clock: a thread that advances every engine's epoch each
//! [`EPOCH_TICK`] while hook calls run, so deadlines fire, and parks once no
//! call has started or run for [`IDLE_TICKS`] ticks, so an idle issuer (a
//! quiet server, a container between bursts) wakes no CPU.
//!
//! A call announces itself with [`EpochClock::running`] before its store is
//! made. The handshake that keeps a deadline from ever being missed: the
//! caller raises the in-flight count, then reads `parked`; the ticker raises
//! `parked`, then reads the count (both sequentially consistent). At least one
//! of them sees the other's write, so either the ticker stays up or the caller
//! unparks it. While parked the epoch stands still; deadlines are counted from
//! the epoch at the call, so they start when the ticker is back (one wake-up,
//! tens of microseconds, later at most).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::Thread;

use super::Inner;
use super::setup::EPOCH_TICK;

/// Ticks without a call in flight before the ticker parks: 100 ms. Shorter
/// saves a few more idle wake-ups; longer spares an occasional request the
/// unpark (one futex wake).
pub const IDLE_TICKS: u32 = 100;

#[derive(Default)]
pub(super) struct EpochClock {
    in_flight: AtomicUsize,
    /// Calls started, ever (wrapping): a call that began and ended between
    /// two ticks still counts as activity.
    started: AtomicUsize,
    parked: AtomicBool,
    stopped: AtomicBool,
    ticker: OnceLock<Thread>,
}

/// A call in flight; the count drops with it.
pub(super) struct Running<'a>(&'a EpochClock);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, SeqCst);
    }
}

impl EpochClock {
    /// Count a call in flight until the guard drops; wake the ticker if it
    /// was parked.
    pub(super) fn running(&self) -> Running<'_> {
        self.in_flight.fetch_add(1, SeqCst);
        self.started.fetch_add(1, SeqCst);
        if self.parked.load(SeqCst) {
            self.wake();
        }
        Running(self)
    }

    /// Whether the ticker is parked (no call for [`IDLE_TICKS`] ticks).
    pub(super) fn is_parked(&self) -> bool {
        self.parked.load(SeqCst)
    }

    /// The engine is gone: let the ticker end.
    pub(super) fn stop(&self) {
        self.stopped.store(true, SeqCst);
        self.wake();
    }

    fn wake(&self) {
        if let Some(ticker) = self.ticker.get() {
            ticker.unpark();
        }
    }

    /// Start the ticker thread for `inner`'s engines; it ends once `inner`
    /// is dropped.
    pub(super) fn start(clock: Arc<EpochClock>, inner: Weak<Inner>) {
        std::thread::Builder::new()
            .name("tokenhook-epoch".into())
            .spawn(move || clock.tick_until_dropped(inner))
            .expect("spawn epoch thread");
    }

    fn tick_until_dropped(&self, inner: Weak<Inner>) {
        // Known before the ticker can park, so every wake reaches it.
        let _ = self.ticker.set(std::thread::current());
        let (mut idle, mut seen) = (0, 0);
        loop {
            let Some(inner) = inner.upgrade() else { return };
            for (_, engine) in inner.engines.lock().expect("engine lock").iter() {
                engine.increment_epoch();
            }
            drop(inner);
            let started = self.started.load(SeqCst);
            if started == seen && self.in_flight.load(SeqCst) == 0 {
                idle += 1;
            } else {
                (idle, seen) = (0, started);
            }
            if idle < IDLE_TICKS {
                std::thread::sleep(EPOCH_TICK);
                continue;
            }
            idle = 0;
            self.parked.store(true, SeqCst);
            // `park` may return spuriously, and a wake may come before it.
            while self.in_flight.load(SeqCst) == 0 && !self.stopped.load(SeqCst) {
                std::thread::park();
            }
            self.parked.store(false, SeqCst);
        }
    }
}
