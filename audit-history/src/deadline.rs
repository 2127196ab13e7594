//! A deadline around a store call, on any executor.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use crate::error::DeadlineExceeded;

/// Runs `work` until it completes or `deadline` passes, whichever is first;
/// past the deadline `work` is dropped (cancelled).
///
/// The timer is `futures-timer`'s rather than Tokio's: Tokio's panics on a
/// runtime built without `enable_time`, and a governed write must not take
/// the process down over how its runtime was built. The timer is only
/// armed when `work` does not finish on its first poll, so a store that
/// answers at once (the memory store) pays nothing for it.
pub(crate) async fn within<F: Future>(deadline: Duration, work: F) -> Result<F::Output, DeadlineExceeded> {
    let mut work = pin!(work);
    let mut timer: Option<futures_timer::Delay> = None;
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(output) = work.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        let timer = timer.get_or_insert_with(|| futures_timer::Delay::new(deadline));
        match std::pin::Pin::new(timer).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(DeadlineExceeded { deadline })),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}
