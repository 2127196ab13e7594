//! Timing: `concurrency` workers run one operation in a loop for a slice of
//! time; the provider's and the baseline's slices alternate (ABBA) so that
//! drift on a shared machine hits both equally.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What one operation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Done {
    /// It did its work.
    Ok,
    /// It lost a compare-and-set race (counted apart, not as throughput).
    Conflict,
}

pub(crate) type OpFuture = Pin<Box<dyn Future<Output = Result<Done, String>> + Send>>;

/// One benchmarked operation: called with a number unique across the run.
pub(crate) type Op = Arc<dyn Fn(u64) -> OpFuture + Send + Sync>;

/// Makes an [`Op`] from an async closure over a unique number.
pub(crate) fn op<F, Fut>(f: F) -> Op
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Done, String>> + Send + 'static,
{
    Arc::new(move |n| Box::pin(f(n)))
}

/// Totals of one side over all its slices.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    ok: u64,
    conflicts: u64,
    /// Summed over workers: each worker's time from the slice's start to its
    /// last completed operation.
    worker_time: Duration,
    /// Workers per slice.
    concurrency: usize,
    latencies_us: Vec<u64>,
}

impl Tally {
    /// Operations per second of all workers together: each worker's rate is
    /// what it completed over the time it took, so an operation still
    /// running at the end of a slice biases neither the slower nor the
    /// faster side.
    pub(crate) fn ops_per_s(&self) -> f64 {
        self.concurrency.max(1) as f64 * self.ok as f64 / self.worker_time.as_secs_f64().max(1e-9)
    }

    pub(crate) fn conflicts_per_s(&self) -> f64 {
        self.concurrency.max(1) as f64 * self.conflicts as f64 / self.worker_time.as_secs_f64().max(1e-9)
    }

    /// The `q`-quantile of successful operations' latencies, in µs.
    pub(crate) fn quantile_us(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        let at = ((sorted.len() - 1) as f64 * q).round() as usize;
        sorted[at] as f64
    }
}

/// How long and how often to measure.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    /// One slice of one side.
    pub(crate) slice: Duration,
    /// Slices per side (alternating order each round).
    pub(crate) rounds: usize,
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// Runs `op` on `concurrency` workers, each starting operations until
/// `length` has passed and timing itself to its last completion.
async fn slice(op: &Op, concurrency: usize, length: Duration, tally: &mut Tally) -> Result<(), String> {
    let started = Instant::now();
    let deadline = started + length;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let op = Arc::clone(op);
        workers.spawn(async move {
            let (mut ok, mut conflicts, mut latencies, mut last) = (0u64, 0u64, Vec::new(), Duration::ZERO);
            while Instant::now() < deadline {
                let began = Instant::now();
                match op(SEQUENCE.fetch_add(1, Ordering::Relaxed)).await? {
                    Done::Ok => {
                        ok += 1;
                        latencies.push(began.elapsed().as_micros() as u64);
                    }
                    Done::Conflict => conflicts += 1,
                }
                last = started.elapsed();
            }
            Ok::<_, String>((ok, conflicts, latencies, last))
        });
    }
    while let Some(joined) = workers.join_next().await {
        let (ok, conflicts, latencies, last) = joined.map_err(|e| e.to_string())??;
        tally.ok += ok;
        tally.conflicts += conflicts;
        tally.latencies_us.extend(latencies);
        tally.worker_time += last;
    }
    tally.concurrency = concurrency;
    Ok(())
}

/// Measures `provider` and `baseline` in alternating slices.
pub(crate) async fn interleaved(
    plan: Plan,
    concurrency: usize,
    provider: &Op,
    baseline: &Op,
) -> Result<(Tally, Tally), String> {
    let (mut a, mut b) = (Tally::default(), Tally::default());
    // Warm-up, not counted: both sides open their connections and prepare
    // their statements before either is timed.
    let warm = plan.slice / 2;
    slice(provider, concurrency, warm, &mut Tally::default()).await?;
    slice(baseline, concurrency, warm, &mut Tally::default()).await?;
    for round in 0..plan.rounds {
        if round % 2 == 0 {
            slice(provider, concurrency, plan.slice, &mut a).await?;
            slice(baseline, concurrency, plan.slice, &mut b).await?;
        } else {
            slice(baseline, concurrency, plan.slice, &mut b).await?;
            slice(provider, concurrency, plan.slice, &mut a).await?;
        }
    }
    Ok((a, b))
}

/// Latencies of single calls (queries): `samples` calls of each side,
/// alternating one by one, both calls of a pair with the same argument.
pub(crate) async fn alternating(samples: usize, provider: &Op, baseline: &Op) -> Result<(Tally, Tally), String> {
    let (mut a, mut b) = (Tally::default(), Tally::default());
    for op in [provider, baseline] {
        op(0).await?; // warm-up
    }
    for i in 0..samples {
        let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let (first, second) = if i % 2 == 0 { (&mut a, &mut b) } else { (&mut b, &mut a) };
        let (first_op, second_op) = if i % 2 == 0 { (provider, baseline) } else { (baseline, provider) };
        for (side, op) in [(first, first_op), (second, second_op)] {
            let began = Instant::now();
            op(n).await?;
            let took = began.elapsed();
            side.ok += 1;
            side.worker_time += took;
            side.concurrency = 1;
            side.latencies_us.push(took.as_micros() as u64);
        }
    }
    Ok((a, b))
}
