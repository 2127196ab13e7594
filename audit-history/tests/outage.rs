//! A store that does not answer costs each write at most the deadline,
//! fail-open and fail-closed, and the breaker finds the store again.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use audit_history::metrics::{BREAKER_OPENED, SHORT_CIRCUITED, SPOOLED, STORE_TIMEOUTS, WRITE_FAILURES};
use audit_history::{AuditError, BreakerOptions, BreakerState, Durability, Recorder, Relay, Spool, SpoolOptions};
use common::{Hanging, evidence, stored};
use governance_abstractions::GovernanceError;

const DEADLINE: Duration = Duration::from_millis(100);
/// What the latency bounds allow on top of the deadline: scheduling and the
/// spool's fsync (one at a time, under the spool's lock) on a loaded 2-core
/// machine. Generous on purpose: the counters say whether writes waited for
/// the store; the bound only catches a write that waited out a long timeout
/// (a pool's 30 s) instead of the deadline.
fn bound(deadline: Duration) -> Duration {
    deadline + deadline.max(Duration::from_millis(250))
}
const WRITERS: usize = 8;
const OUTAGE: Duration = Duration::from_millis(2500);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// `WRITERS` tasks writing for `OUTAGE` against `recorder`: every latency,
/// and how many writes were acknowledged.
async fn outage(recorder: &Recorder, check: fn(Result<audit_history::Receipt, AuditError>)) -> Vec<Duration> {
    let until = Instant::now() + OUTAGE;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let recorder = recorder.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = 0;
                while Instant::now() < until {
                    let started = Instant::now();
                    let result = recorder.record(evidence("ws", &format!("w{w}n{n}"))).await;
                    latencies.push(started.elapsed());
                    check(result);
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort();
    all
}

fn report(what: &str, latencies: &[Duration]) {
    println!(
        "{what}: {} writes, p50 {:?}, p99 {:?}, max {:?} (deadline {:?})",
        latencies.len(),
        percentile(latencies, 0.50),
        percentile(latencies, 0.99),
        latencies.last().unwrap(),
        DEADLINE
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_against_a_store_that_never_answers_spools_within_the_deadline() {
    let name = common::counting("open");
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(dir.path(), SpoolOptions::default()).unwrap());
    let store = Hanging::down();
    let recorder = Recorder::new(store.clone()).fail_open(spool.clone()).deadline(DEADLINE).named(&name);
    let latencies = outage(&recorder, |result| assert_eq!(result.unwrap().durability, Durability::Spooled)).await;
    report("fail-open, store never answers", &latencies);
    let writes = latencies.len() as u64;
    let tried = store.calls.load(Ordering::SeqCst) as u64;
    // The writes in flight when the breaker opened, then one trial a
    // cool-down (1 s): the rest never waited for the store.
    assert!(tried <= WRITERS as u64 + 4, "{tried} of {writes} writes waited for the store");
    assert_eq!(common::metric(STORE_TIMEOUTS, &name), tried);
    assert_eq!(common::metric(WRITE_FAILURES, &name), tried);
    assert_eq!(common::metric(SHORT_CIRCUITED, &name), writes - tried);
    assert_eq!(common::metric(SPOOLED, &name), writes);
    assert_eq!(common::metric(BREAKER_OPENED, &name), 1);
    assert_ne!(recorder.breaker_state(), BreakerState::Closed);
    assert_eq!(spool.pending().unwrap() as u64, writes, "every acknowledged write is in the spool");
    assert!(percentile(&latencies, 0.99) <= bound(DEADLINE), "p99 {:?}", percentile(&latencies, 0.99));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_against_a_store_that_never_answers_refuses_within_the_deadline() {
    let name = common::counting("closed");
    let store = Hanging::down();
    let recorder = Recorder::new(store.clone()).deadline(DEADLINE).named(&name);
    let latencies = outage(&recorder, |result| match result {
        Err(error @ AuditError::NotStored(GovernanceError::Unavailable { .. })) => {
            assert!(error.is_deadline_exceeded() || error.is_breaker_open(), "{error}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    })
    .await;
    report("fail-closed, store never answers", &latencies);
    let writes = latencies.len() as u64;
    let tried = store.calls.load(Ordering::SeqCst) as u64;
    assert!(tried <= WRITERS as u64 + 4, "{tried} of {writes} writes waited for the store");
    assert_eq!(common::metric(STORE_TIMEOUTS, &name), tried);
    assert_eq!(common::metric(SHORT_CIRCUITED, &name), writes - tried, "the rest were refused at once");
    assert_eq!(common::metric(BREAKER_OPENED, &name), 1);
    assert!(percentile(&latencies, 0.99) <= bound(DEADLINE), "p99 {:?}", percentile(&latencies, 0.99));
}

#[tokio::test]
async fn the_breaker_opens_after_consecutive_failures_and_a_trial_write_closes_it() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(dir.path(), SpoolOptions::default()).unwrap());
    let store = Hanging::down();
    let breaker = BreakerOptions { failures: 2, cool_down: Duration::from_millis(200) };
    let name = common::counting("trial");
    let recorder =
        Recorder::new(store.clone()).fail_open(spool).deadline(Duration::from_millis(50)).breaker(breaker).named(&name);
    for n in 0..2 {
        assert_eq!(recorder.breaker_state(), BreakerState::Closed, "write {n}");
        let started = Instant::now();
        assert_eq!(recorder.record(evidence("ws", "down")).await.unwrap().durability, Durability::Spooled);
        assert!(started.elapsed() >= Duration::from_millis(50), "it waited the deadline");
    }
    assert_eq!(recorder.breaker_state(), BreakerState::Open);
    let started = Instant::now();
    recorder.record(evidence("ws", "down")).await.unwrap();
    // Open: spooled without trying the store (the counters say so; the
    // bound only catches a write that waited out a long timeout).
    assert_eq!(store.calls.load(Ordering::SeqCst), 2, "open: the store was not tried");
    assert_eq!(common::metric(SHORT_CIRCUITED, &name), 1);
    assert!(started.elapsed() < bound(Duration::from_millis(50)), "open: spooled at once ({:?})", started.elapsed());

    // Still down at the first trial: another cool-down.
    tokio::time::sleep(Duration::from_millis(220)).await;
    assert_eq!(recorder.breaker_state(), BreakerState::HalfOpen);
    recorder.record(evidence("ws", "trial")).await.unwrap();
    assert_eq!((store.calls.load(Ordering::SeqCst), recorder.breaker_state()), (3, BreakerState::Open));

    store.hangs.store(false, Ordering::SeqCst);
    recorder.record(evidence("ws", "back")).await.unwrap();
    assert_eq!(store.calls.load(Ordering::SeqCst), 3, "not before the cool-down");
    tokio::time::sleep(Duration::from_millis(220)).await;
    let receipt = recorder.record(evidence("ws", "back")).await.unwrap();
    assert_eq!((receipt.durability, recorder.breaker_state()), (Durability::Stored, BreakerState::Closed));
}

#[tokio::test]
async fn a_refused_connection_counts_like_silence_and_an_answering_error_does_not() {
    let store = Arc::new(Hanging::default());
    store.refuses.store(true, Ordering::SeqCst);
    let recorder = Recorder::new(store.clone());
    for _ in 0..3 {
        assert!(matches!(recorder.record(evidence("ws", "x")).await, Err(AuditError::NotStored(_))));
    }
    let error = recorder.record(evidence("ws", "x")).await.unwrap_err();
    assert!(error.is_breaker_open(), "refused at once while open: {error}");
    assert_eq!(store.calls.load(Ordering::SeqCst), 3);

    // A store that answers, even with an error, is up.
    let refusing = Arc::new(common::Refusing::default());
    refusing.refuse_all.store(true, Ordering::SeqCst);
    let recorder = Recorder::new(refusing);
    for _ in 0..5 {
        let error = recorder.record(evidence("ws", "x")).await.unwrap_err();
        assert!(matches!(error, AuditError::NotStored(GovernanceError::Backend { .. })), "{error}");
    }
    assert_eq!(recorder.breaker_state(), BreakerState::Closed);
}

#[tokio::test]
async fn a_write_committed_after_its_deadline_is_spooled_and_relayed_as_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(dir.path(), SpoolOptions::default()).unwrap());
    let store = Hanging::down();
    store.commit_then_hang.store(true, Ordering::SeqCst);
    let recorder = Recorder::new(store.clone()).fail_open(spool.clone()).deadline(Duration::from_millis(30));
    let receipt = recorder.record(evidence("ws", "late")).await.unwrap();
    assert_eq!(receipt.durability, Durability::Spooled, "no answer in time");
    assert_eq!(stored(&store.inner, "ws").await, vec![receipt.record.clone()], "yet it committed");

    store.hangs.store(false, Ordering::SeqCst);
    let report = Relay::new(spool.clone(), store.clone()).drain().await.unwrap();
    assert_eq!((report.stored, report.already_stored), (0, 1), "same id and hash: a replay");
    assert_eq!(stored(&store.inner, "ws").await, vec![receipt.record], "stored once");
}

#[tokio::test]
async fn a_cancelled_trial_write_does_not_keep_the_breaker_open() {
    let store = Hanging::down();
    let breaker = BreakerOptions { failures: 1, cool_down: Duration::from_millis(50) };
    let recorder = Recorder::new(store.clone()).deadline(Duration::from_millis(100)).breaker(breaker);
    assert!(recorder.record(evidence("ws", "x")).await.unwrap_err().is_deadline_exceeded());
    tokio::time::sleep(Duration::from_millis(60)).await;
    // The caller gives up on the trial write before its deadline.
    assert!(tokio::time::timeout(Duration::from_millis(10), recorder.record(evidence("ws", "x"))).await.is_err());
    assert_eq!(store.calls.load(Ordering::SeqCst), 2);
    assert_eq!(recorder.breaker_state(), BreakerState::HalfOpen, "the trial slot is free again");
    assert!(recorder.record(evidence("ws", "x")).await.unwrap_err().is_deadline_exceeded(), "a new trial");
    assert_eq!(store.calls.load(Ordering::SeqCst), 3);
}

#[test]
fn the_deadline_holds_on_a_runtime_without_timers() {
    // What a caller may have built: no `enable_time`, no `enable_all`.
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(dir.path(), SpoolOptions::default()).unwrap());
    let store = Hanging::down();
    let started = Instant::now();
    let (closed, open) = runtime.block_on(async {
        let closed = Recorder::new(store.clone()).deadline(Duration::from_millis(50));
        let open = Recorder::new(store.clone()).fail_open(spool).deadline(Duration::from_millis(50));
        (closed.record(evidence("ws", "x")).await, open.record(evidence("ws", "y")).await)
    });
    assert!(closed.unwrap_err().is_deadline_exceeded());
    assert_eq!(open.unwrap().durability, Durability::Spooled);
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
}
