//! A deadline around a store call, on any executor.
//!
//! Every recorded piece of evidence runs under a deadline, so arming one
//! must cost next to nothing. The timer is this module's own rather than
//! Tokio's (which panics on a runtime built without `enable_time`: a
//! governed write must not take the process down over how its runtime was
//! built) or `futures-timer`'s (which wakes its thread twice per timer, when
//! armed and when dropped: two context switches per record, on the cores the
//! database server needs). Here one thread sleeps until the earliest
//! deadline; arming a later one, which is every one when they all have the
//! same length, only takes a lock, and a dropped deadline is forgotten
//! without waking anyone.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crate::error::DeadlineExceeded;

/// Runs `work` until it completes or `deadline` passes, whichever is first;
/// past the deadline `work` is dropped (cancelled).
///
/// The timer is only armed when `work` does not finish on its first poll,
/// so a store that answers at once (the memory store) pays nothing for it.
pub(crate) async fn within<F: Future>(deadline: Duration, work: F) -> Result<F::Output, DeadlineExceeded> {
    let mut work = pin!(work);
    let mut timer: Option<Timer> = None;
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(output) = work.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        let timer = timer.get_or_insert_with(|| Timer::new(deadline));
        match timer.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(DeadlineExceeded { deadline })),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// One armed deadline.
enum Timer {
    Shared {
        at: Instant,
        id: u64,
        registered: Option<Waker>,
    },
    /// A deadline past the end of time: it never fires.
    Never,
    /// The timer thread could not be started: `futures-timer`'s instead.
    Fallback(futures_timer::Delay),
}

impl Timer {
    fn new(after: Duration) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        match (Instant::now().checked_add(after), Timers::get()) {
            (None, _) => Timer::Never,
            (Some(at), Some(_)) => Timer::Shared { at, id: NEXT_ID.fetch_add(1, Ordering::Relaxed), registered: None },
            (Some(_), None) => Timer::Fallback(futures_timer::Delay::new(after)),
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self {
            Timer::Fallback(delay) => std::pin::Pin::new(delay).poll(cx),
            Timer::Never => Poll::Pending,
            Timer::Shared { at, id, registered } => {
                if Instant::now() >= *at {
                    return Poll::Ready(());
                }
                if registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    return Poll::Pending;
                }
                let Some(timers) = Timers::get() else { return Poll::Pending };
                timers.register(*at, *id, cx.waker().clone(), registered.is_none());
                *registered = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Timer::Shared { id, registered: Some(_), .. } = self
            && let Some(timers) = Timers::get()
        {
            timers.forget(*id);
        }
    }
}

/// The armed deadlines, and the thread that wakes their tasks.
struct Timers {
    state: Mutex<State>,
    thread: Thread,
}

#[derive(Default)]
struct State {
    /// Earliest first; entries of forgotten deadlines stay until they
    /// expire or a purge drops them.
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    /// The task to wake per live deadline.
    wakers: HashMap<u64, Waker>,
    /// When the thread wakes up next on its own (`None`: only when told).
    sleeping_until: Option<Instant>,
}

impl Timers {
    /// The process's timers, their thread started on first use; `None` if
    /// the thread cannot be started.
    fn get() -> Option<&'static Timers> {
        static TIMERS: OnceLock<Option<Timers>> = OnceLock::new();
        TIMERS
            .get_or_init(|| {
                let thread = std::thread::Builder::new()
                    .name("audit-history-deadlines".into())
                    .spawn(|| {
                        // Wait until the OnceLock holds the timers this thread serves.
                        while TIMERS.get().is_none() {
                            std::thread::park_timeout(Duration::from_millis(1));
                        }
                        if let Some(Some(timers)) = TIMERS.get() {
                            timers.run();
                        }
                    })
                    .ok()?;
                Some(Timers { state: Mutex::new(State::default()), thread: thread.thread().clone() })
            })
            .as_ref()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent between statements: a panic elsewhere
        // while it was held does not make it unusable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn register(&self, at: Instant, id: u64, waker: Waker, first: bool) {
        let wake_thread = {
            let mut state = self.lock();
            state.wakers.insert(id, waker);
            if first {
                state.queue.push(Reverse((at, id)));
                if state.queue.len() > 2 * state.wakers.len() + 1024 {
                    let State { queue, wakers, .. } = &mut *state;
                    queue.retain(|Reverse((_, id))| wakers.contains_key(id));
                }
            }
            let earlier = state.sleeping_until.is_none_or(|until| at < until);
            if earlier {
                state.sleeping_until = Some(at);
            }
            earlier
        };
        if wake_thread {
            self.thread.unpark();
        }
    }

    fn forget(&self, id: u64) {
        self.lock().wakers.remove(&id);
    }

    fn run(&self) {
        loop {
            let mut due = Vec::new();
            let next = {
                let mut state = self.lock();
                let now = Instant::now();
                while let Some(&Reverse((at, id))) = state.queue.peek() {
                    if at > now {
                        break;
                    }
                    state.queue.pop();
                    due.extend(state.wakers.remove(&id));
                }
                let next = state.queue.peek().map(|Reverse((at, _))| *at);
                state.sleeping_until = next;
                next
            };
            due.into_iter().for_each(Waker::wake);
            match next {
                Some(at) => std::thread::park_timeout(at.saturating_duration_since(Instant::now())),
                None => std::thread::park(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn work_that_finishes_first_is_returned() {
        let output = within(Duration::from_secs(5), async {
            tokio::task::yield_now().await;
            7
        })
        .await;
        assert_eq!(output.ok(), Some(7));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn work_past_its_deadline_is_cancelled() {
        let started = Instant::now();
        let output = within(Duration::from_millis(50), std::future::pending::<()>()).await;
        assert!(output.is_err());
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(50) && took < Duration::from_secs(5), "{took:?}");
    }

    /// A short deadline armed after long ones still fires on time: the
    /// thread sleeping towards the long ones is woken for it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_earlier_deadline_armed_later_still_fires_on_time() {
        let long: Vec<_> =
            (0..20).map(|_| tokio::spawn(within(Duration::from_secs(3600), std::future::pending::<()>()))).collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let started = Instant::now();
        let output = within(Duration::from_millis(30), std::future::pending::<()>()).await;
        assert!(output.is_err());
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        long.iter().for_each(tokio::task::JoinHandle::abort);
    }

    /// Deadlines of finished calls are forgotten, so many of them leave
    /// neither wakers nor an unbounded queue behind.
    #[tokio::test(flavor = "current_thread")]
    async fn finished_calls_leave_nothing_behind() {
        for _ in 0..5_000 {
            let output = within(Duration::from_secs(3600), async {
                tokio::task::yield_now().await;
            })
            .await;
            assert!(output.is_ok());
        }
        let timers = Timers::get().expect("the timer thread starts");
        let state = timers.lock();
        // Other tests of this binary may hold a few live deadlines.
        assert!(state.wakers.len() < 100, "{}", state.wakers.len());
        assert!(state.queue.len() < 2 * 100 + 1024 + 1, "{}", state.queue.len());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_deadline_past_the_end_of_time_never_fires() {
        let output = within(Duration::MAX, async {
            tokio::task::yield_now().await;
            1
        })
        .await;
        assert_eq!(output.ok(), Some(1));
    }
}
