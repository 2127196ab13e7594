//! The recorder's circuit breaker: once the store is known to be down,
//! writes stop waiting for it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::error::BreakerOpen;
use crate::metrics::{BREAKER_OPEN, BREAKER_OPENED, count};

/// When the recorder stops sending writes to a store that does not answer,
/// and when it tries again.
///
/// "Does not answer" means the store was unreachable, the connection was
/// lost, or the recorder's deadline passed. A store that answers with an
/// error (a constraint, a deadlock, a busy database) is up, and resets the
/// count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerOptions {
    /// Consecutive writes without an answer that open the breaker (at least
    /// 1; default 3). One lost connection alone does not open it, so a
    /// fail-closed recorder does not refuse writes for a whole cool-down
    /// over a single dropped connection.
    pub failures: u32,
    /// How long the breaker stays open before one write is sent to the
    /// store again as a trial (default 1 s). While open, fail-open writes
    /// spool at once and fail-closed writes are refused at once.
    pub cool_down: Duration,
}

impl Default for BreakerOptions {
    fn default() -> Self {
        Self { failures: 3, cool_down: Duration::from_secs(1) }
    }
}

/// Where the recorder's breaker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Writes go to the store.
    Closed,
    /// The store is known to be down: writes do not go to it.
    Open,
    /// The cool-down is over and one trial write is (or may be) on its way
    /// to the store; the others still do not wait for it.
    HalfOpen,
}

#[derive(Debug)]
pub(crate) struct Breaker {
    options: BreakerOptions,
    state: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Consecutive writes without an answer.
    failures: u32,
    open: Option<Open>,
}

#[derive(Debug)]
struct Open {
    since: Instant,
    retry_at: Instant,
    /// A trial write is out.
    trial: bool,
}

/// What [`Breaker::admit`] allows.
pub(crate) enum Admit {
    /// Send the write; report how it went with the permit.
    Try(Permit),
    /// Do not send it.
    Skip(BreakerOpen),
}

/// One write let through to the store. Dropping it unreported (the caller
/// cancelled the write) frees the trial slot, so a cancelled trial cannot
/// leave the breaker open for good.
pub(crate) struct Permit {
    breaker: Arc<Breaker>,
    trial: bool,
    reported: bool,
}

impl Breaker {
    pub(crate) fn new(options: BreakerOptions) -> Arc<Self> {
        let options = BreakerOptions { failures: options.failures.max(1), ..options };
        Arc::new(Self { options, state: Mutex::new(Inner::default()) })
    }

    pub(crate) fn options(&self) -> BreakerOptions {
        self.options
    }

    pub(crate) fn state(&self) -> BreakerState {
        match &self.lock().open {
            None => BreakerState::Closed,
            Some(open) if open.trial || Instant::now() >= open.retry_at => BreakerState::HalfOpen,
            Some(_) => BreakerState::Open,
        }
    }

    pub(crate) fn admit(self: &Arc<Self>) -> Admit {
        let mut inner = self.lock();
        let Some(open) = &mut inner.open else {
            return Admit::Try(Permit { breaker: Arc::clone(self), trial: false, reported: false });
        };
        let now = Instant::now();
        if open.trial || now < open.retry_at {
            return Admit::Skip(BreakerOpen {
                down_for: now.saturating_duration_since(open.since),
                retry_in: open.retry_at.saturating_duration_since(now),
            });
        }
        open.trial = true;
        Admit::Try(Permit { breaker: Arc::clone(self), trial: true, reported: false })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Permit {
    /// The store answered (taken, or refused with an error of its own).
    pub(crate) fn answered(mut self, recorder: &str) {
        self.reported = true;
        let mut inner = self.breaker.lock();
        inner.failures = 0;
        if let Some(open) = inner.open.take() {
            drop(inner);
            metrics::gauge!(BREAKER_OPEN, "recorder" => recorder.to_owned()).set(0.0);
            tracing::info!(
                recorder,
                down_ms = open.since.elapsed().as_millis() as u64,
                "evidence store answers again; writes go to it again"
            );
        }
    }

    /// The store did not answer (unreachable, connection lost, deadline).
    pub(crate) fn no_answer(mut self, recorder: &str) {
        self.reported = true;
        let options = self.breaker.options;
        let mut inner = self.breaker.lock();
        inner.failures = inner.failures.saturating_add(1);
        let failures = inner.failures;
        let now = Instant::now();
        match &mut inner.open {
            // The trial failed: closed to writes for another cool-down.
            Some(open) if self.trial => {
                open.trial = false;
                open.retry_at = now + options.cool_down;
            }
            // A write admitted before the breaker opened, answering late.
            Some(_) => {}
            None if failures >= options.failures => {
                inner.open = Some(Open { since: now, retry_at: now + options.cool_down, trial: false });
                drop(inner);
                count(BREAKER_OPENED, recorder, 1);
                metrics::gauge!(BREAKER_OPEN, "recorder" => recorder.to_owned()).set(1.0);
                tracing::error!(
                    recorder,
                    failures,
                    cool_down_ms = options.cool_down.as_millis() as u64,
                    "evidence store does not answer: breaker open, writes no longer wait for it \
                     (fail-open spools, fail-closed refuses) until a trial write gets through"
                );
            }
            None => {}
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.trial && !self.reported {
            let mut inner = self.breaker.lock();
            if let Some(open) = &mut inner.open {
                open.trial = false;
                open.retry_at = Instant::now();
            }
        }
    }
}
