//! `GovernanceService`'s retry policy, deterministically: a store that fails
//! a given number of times with each class of failure, in front of the
//! memory provider.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use conformance_tests::faults::{Call, Hook, Hooked};
use governance_abstractions::{
    Action, Actor, GovernanceError, GovernanceRequest, GovernanceService, GovernanceStore, NewRequest, PageRequest,
    PendingReason, RequestFilter, RequestId, RequestStatus, Result, RetryPolicy, TargetRef, WorkspaceId,
};
use governance_memory::MemoryStore;
use serde_json::json;

/// One injected failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// Another writer got there first.
    Conflict,
    /// A deadlock, serialization or certification failure: rolled back.
    Deadlock,
    /// The connection dropped before the write reached the database.
    Lost,
    /// The write committed, then the connection dropped before the reply.
    LostReply,
    /// A failure no retry can help.
    Fatal,
    /// The id is another request's (what a store answers when the id it
    /// was given is taken by someone else).
    TakenByOther,
}

fn error(fault: Fault, id: RequestId) -> GovernanceError {
    match fault {
        Fault::Conflict => GovernanceError::Conflict { id, expected: 1, actual: 2 },
        Fault::Deadlock => GovernanceError::backend(true, "deadlock detected"),
        Fault::Lost | Fault::LostReply => GovernanceError::Unavailable { source: "connection reset".into() },
        Fault::Fatal => GovernanceError::backend(false, "permission denied"),
        Fault::TakenByOther => GovernanceError::AlreadyExists {
            kind: governance_abstractions::EntityKind::Request,
            workspace: workspace(),
            id: RequestId::new().to_string(),
        },
    }
}

/// Fails the next calls of each kind as queued, then behaves.
#[derive(Default)]
struct Faults {
    creates: Mutex<VecDeque<Fault>>,
    commits: Mutex<VecDeque<Fault>>,
    reads: Mutex<VecDeque<Fault>>,
    /// History reads: how the service asks whether a lost commit landed.
    history_reads: Mutex<VecDeque<Fault>>,
    read_calls: AtomicU32,
    commit_calls: AtomicU32,
    create_calls: AtomicU32,
    /// The write let through now is to lose its reply.
    lose_reply: AtomicBool,
}

impl Faults {
    fn failing(queue: &Mutex<VecDeque<Fault>>, fault: Fault, times: usize) {
        queue.lock().unwrap().extend(std::iter::repeat_n(fault, times));
    }

    fn next(queue: &Mutex<VecDeque<Fault>>) -> Option<Fault> {
        queue.lock().unwrap().pop_front()
    }

    /// The write's queued fault: a lost reply lets the write through.
    fn write(&self, calls: &AtomicU32, queue: &Mutex<VecDeque<Fault>>, id: RequestId) -> Result<()> {
        calls.fetch_add(1, Ordering::SeqCst);
        match Faults::next(queue) {
            None => Ok(()),
            Some(Fault::LostReply) => {
                self.lose_reply.store(true, Ordering::SeqCst);
                Ok(())
            }
            Some(fault) => Err(error(fault, id)),
        }
    }
}

#[async_trait]
impl Hook for Faults {
    async fn before(&self, _: &dyn GovernanceStore, call: Call<'_>) -> Result<()> {
        match call {
            Call::CreateRequest(creation) => self.write(&self.create_calls, &self.creates, creation.request().id()),
            Call::CommitTransition(change) => self.write(&self.commit_calls, &self.commits, change.request().id()),
            Call::GetRequest(_, id) => {
                self.read_calls.fetch_add(1, Ordering::SeqCst);
                Faults::next(&self.reads).map_or(Ok(()), |fault| Err(error(fault, id)))
            }
            Call::ReadHistory => {
                Faults::next(&self.history_reads).map_or(Ok(()), |fault| Err(error(fault, RequestId::new())))
            }
            _ => Ok(()),
        }
    }

    fn after(&self, call: Call<'_>, failed: Option<&GovernanceError>) -> Option<GovernanceError> {
        let id = match call {
            Call::CreateRequest(creation) => creation.request().id(),
            Call::CommitTransition(change) => change.request().id(),
            _ => return None,
        };
        // Stored, then the connection dropped before the reply.
        let lost = self.lose_reply.swap(false, Ordering::SeqCst) && failed.is_none();
        lost.then(|| error(Fault::LostReply, id))
    }
}

/// The memory provider behind [`Faults`].
fn flaky() -> Arc<Hooked<Faults>> {
    Arc::new(Hooked::new(Arc::new(MemoryStore::new()), Faults::default()))
}

/// No waiting between attempts: the tests count attempts, not time.
fn immediate(attempts: u32) -> RetryPolicy {
    RetryPolicy::default().with_max_attempts(attempts).with_delays(Duration::ZERO, Duration::ZERO)
}

fn workspace() -> WorkspaceId {
    WorkspaceId::new("retry").unwrap()
}

fn spec() -> NewRequest {
    NewRequest::new(workspace(), TargetRef::new("flag", "checkout"), "enable", Actor::user("dana"))
}

fn annotate(n: u64) -> Action {
    Action::Annotate { metadata: json!({ "n": n }) }
}

async fn service(store: &Arc<Hooked<Faults>>, policy: RetryPolicy) -> (GovernanceService, GovernanceRequest) {
    let service = GovernanceService::new(store.clone()).with_retry_policy(policy);
    let request = service.create(spec()).await.unwrap().into_inner();
    (service, request)
}

async fn codes(store: &Hooked<Faults>, id: RequestId) -> Vec<String> {
    store
        .inner()
        .history_for_request(&workspace(), id)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.evidence().code.clone())
        .collect()
}

#[tokio::test]
async fn each_retryable_commit_failure_is_retried_and_the_change_lands_once() {
    for fault in [Fault::Conflict, Fault::Deadlock, Fault::Lost] {
        let store = flaky();
        let (service, request) = service(&store, immediate(5)).await;
        Faults::failing(&store.hook().commits, fault, 3);
        let by = Actor::user("dana").into();
        let done = service.apply(&workspace(), request.id(), &by, annotate(1)).await;
        let done = done.unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        assert_eq!(done.request().revision(), 2, "{fault:?}");
        assert_eq!(store.hook().commit_calls.load(Ordering::SeqCst), 4, "{fault:?}: three failures, then the commit");
        let stored = store.inner().get_request(&workspace(), request.id()).await.unwrap();
        assert_eq!((stored.revision(), stored.spec().metadata.clone()), (2, json!({"n": 1})), "{fault:?}");
        assert_eq!(codes(&store, request.id()).await.len(), 2, "{fault:?}: created + one annotation");
    }
}

#[tokio::test]
async fn a_commit_whose_reply_was_lost_is_found_not_applied_twice() {
    let store = flaky();
    let (service, request) = service(&store, immediate(5)).await;
    Faults::failing(&store.hook().commits, Fault::LostReply, 1);
    let by = Actor::user("dana").into();
    let done = service.apply(&workspace(), request.id(), &by, annotate(7)).await.expect("the committed change");
    assert_eq!(done.request().revision(), 2);
    assert_eq!(store.hook().commit_calls.load(Ordering::SeqCst), 1, "no second commit of a committed change");
    let stored = store.inner().get_request(&workspace(), request.id()).await.unwrap();
    assert_eq!(stored.revision(), 2, "annotated once, not twice");
    assert_eq!(codes(&store, request.id()).await.len(), 2);
}

#[tokio::test]
async fn a_lost_commit_then_a_lost_reply_still_applies_once() {
    let store = flaky();
    let (service, request) = service(&store, immediate(5)).await;
    store.hook().commits.lock().unwrap().extend([Fault::Lost, Fault::LostReply]);
    let by = Actor::user("dana").into();
    let ws = workspace();
    let done = service.apply(&ws, request.id(), &by, Action::Submit { reason: PendingReason::Quota }).await;
    assert_eq!(done.expect("submitted").request().status(), RequestStatus::Pending);
    assert_eq!(store.hook().commit_calls.load(Ordering::SeqCst), 2);
    assert_eq!(store.inner().get_request(&workspace(), request.id()).await.unwrap().revision(), 2);
}

#[tokio::test]
async fn failed_reads_are_retried() {
    let store = flaky();
    let (service, request) = service(&store, immediate(5)).await;
    store.hook().reads.lock().unwrap().extend([Fault::Lost, Fault::Deadlock]);
    let by = Actor::user("dana").into();
    let done = service.apply(&workspace(), request.id(), &by, annotate(1)).await.expect("applied after two reads");
    assert_eq!(done.request().revision(), 2);
}

#[tokio::test]
async fn retries_are_bounded_and_the_caller_learns_how_many_were_made() {
    for fault in [Fault::Conflict, Fault::Deadlock, Fault::Lost] {
        let store = flaky();
        let (service, request) = service(&store, immediate(4)).await;
        Faults::failing(&store.hook().commits, fault, 100);
        let by = Actor::user("dana").into();
        let error = service.apply(&workspace(), request.id(), &by, annotate(1)).await.unwrap_err();
        assert_eq!(error.attempts(), Some(4), "{fault:?}: {error}");
        assert!(error.is_retryable(), "{fault:?}: still retryable by the caller: {error}");
        assert_eq!(error.is_conflict(), fault == Fault::Conflict, "{error}");
        assert!(error.to_string().contains("4 attempts"), "{error}");
        assert_eq!(store.hook().commit_calls.load(Ordering::SeqCst), 4, "{fault:?}");
        assert_eq!(store.inner().get_request(&workspace(), request.id()).await.unwrap().revision(), 1, "{fault:?}");
    }
}

#[tokio::test]
async fn a_failure_no_retry_can_help_comes_back_at_once() {
    let store = flaky();
    let (service, request) = service(&store, immediate(5)).await;
    Faults::failing(&store.hook().commits, Fault::Fatal, 1);
    let by = Actor::user("dana").into();
    let error = service.apply(&workspace(), request.id(), &by, annotate(1)).await.unwrap_err();
    assert!(matches!(error, GovernanceError::Backend { retryable: false, .. }), "{error:?}");
    assert_eq!(error.attempts(), None);
    assert_eq!(store.hook().commit_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_deadline_bounds_the_total_time() {
    let store = flaky();
    let policy = RetryPolicy::default()
        .with_max_attempts(1_000)
        .with_delays(Duration::from_millis(40), Duration::from_millis(40))
        .with_deadline(Some(Duration::from_millis(150)));
    let (service, request) = service(&store, policy).await;
    Faults::failing(&store.hook().commits, Fault::Deadlock, 1_000);
    let started = Instant::now();
    let by = Actor::user("dana").into();
    let error = service.apply(&workspace(), request.id(), &by, annotate(1)).await.unwrap_err();
    let attempts = error.attempts().expect("retried");
    assert!((2..=6).contains(&attempts), "{attempts} attempts within a 150 ms deadline of 0–40 ms waits");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_creation_is_retried_as_the_same_request() {
    for (fault, key) in
        [(Fault::Lost, false), (Fault::LostReply, false), (Fault::LostReply, true), (Fault::Deadlock, true)]
    {
        let store = flaky();
        let service = GovernanceService::new(store.clone()).with_retry_policy(immediate(5));
        Faults::failing(&store.hook().creates, fault, 1);
        let spec = if key { spec().idempotency_key("change-1") } else { spec() };
        let created = service.create(spec).await.unwrap_or_else(|e| panic!("{fault:?}: {e}")).into_inner();
        assert_eq!(store.hook().create_calls.load(Ordering::SeqCst), 2, "{fault:?}");
        let all = store.inner().query_requests(&workspace(), &RequestFilter::default(), &PageRequest::first(10)).await;
        let all = all.unwrap().items;
        assert_eq!(all.len(), 1, "{fault:?} (key: {key}): one request, not two");
        assert_eq!(all[0].id(), created.id());
        assert_eq!(codes(&store, created.id()).await.len(), 1, "{fault:?}: one creation record");
    }
}

#[tokio::test]
async fn a_held_request_is_changed_without_reading_it_and_a_stale_one_after_a_conflict() {
    let store = flaky();
    let (service, created) = service(&store, immediate(5)).await;
    let by = Actor::user("dana").into();
    let first = service.apply_to(&created, &by, annotate(1)).await.expect("from the held state");
    assert_eq!(first.request().revision(), 2);
    assert_eq!(store.hook().read_calls.load(Ordering::SeqCst), 0, "nothing read: the caller held the state");
    let second = service.apply_to(first.request(), &by, annotate(2)).await.expect("chained");
    assert_eq!((second.request().revision(), store.hook().read_calls.load(Ordering::SeqCst)), (3, 0));
    // `created` is two revisions old now: the store refuses it, the service
    // re-reads once and applies on top of what is stored.
    let late = service.apply_to(&created, &by, annotate(3)).await.expect("after one conflict");
    assert_eq!(late.request().revision(), 4);
    assert_eq!(store.hook().read_calls.load(Ordering::SeqCst), 1);
    let stored = store.inner().get_request(&workspace(), created.id()).await.unwrap();
    assert_eq!((stored.revision(), stored.spec().metadata.clone()), (4, json!({"n": 3})));
    assert_eq!(codes(&store, created.id()).await.len(), 4, "created + three annotations, none lost");
}

#[test]
fn a_policy_reports_what_it_was_given_and_defaults_to_the_documented_values() {
    let default = RetryPolicy::default();
    assert_eq!(default.max_attempts(), 10);
    assert_eq!(default.delays(), (Duration::from_millis(2), Duration::from_millis(200)));
    assert_eq!(default.deadline(), Some(Duration::from_secs(10)));
    let never = RetryPolicy::never();
    assert_eq!((never.max_attempts(), never.delays(), never.deadline()), (1, default.delays(), default.deadline()));
    let custom = RetryPolicy::default()
        .with_max_attempts(0)
        .with_delays(Duration::from_millis(5), Duration::from_millis(1))
        .with_deadline(None);
    assert_eq!(custom.max_attempts(), 1, "at least one attempt");
    assert_eq!(custom.delays(), (Duration::from_millis(5), Duration::from_millis(5)), "the longest is never shorter");
    assert_eq!(custom.deadline(), None);
    assert_eq!(RetryPolicy::default().with_max_attempts(200).max_attempts(), 200);
}

fn due_spec(n: u64) -> NewRequest {
    let past = governance_abstractions::Timestamp::from_unix_micros(1_700_000_000_000_000 + n as i64).unwrap();
    NewRequest::new(workspace(), TargetRef::new("flag", format!("due-{n}")), "enable", Actor::user("dana"))
        .expires_at(past)
}

#[tokio::test]
async fn a_sweep_expires_every_due_request_across_pages_and_refuses_none_that_are_not_due() {
    let store = flaky();
    let service = GovernanceService::new(store.clone()).with_retry_policy(immediate(3));
    // More than one page of due requests, and some that are not due.
    let mut due = Vec::new();
    for n in 0..130 {
        due.push(service.create(due_spec(n)).await.unwrap().into_inner().id());
    }
    let later = service.create(spec()).await.unwrap().into_inner();
    let now = governance_abstractions::Timestamp::now();
    let report = service.expire_due(&workspace(), now).await.unwrap();
    assert_eq!(report.expired.len(), 130, "every page swept");
    assert!(report.refused.is_empty(), "nothing refused: {:?}", report.refused);
    let stored = store.inner().get_request(&workspace(), later.id()).await.unwrap();
    assert_eq!(stored.status(), RequestStatus::Created, "a request without an expiry is left alone");
    assert!(format!("{service:?}").contains("GovernanceService"), "{service:?}");
    assert_eq!(service.retry_policy().max_attempts(), 3);
}

#[tokio::test]
async fn a_sweep_leaves_a_busy_request_and_stops_on_a_store_failure() {
    let store = flaky();
    let service = GovernanceService::new(store.clone()).with_retry_policy(immediate(2));
    let busy = service.create(due_spec(1)).await.unwrap().into_inner();
    Faults::failing(&store.hook().commits, Fault::Conflict, 2);
    let report = service.expire_due(&workspace(), governance_abstractions::Timestamp::now()).await.unwrap();
    assert!(report.expired.is_empty() && report.refused.is_empty(), "left for the next sweep: {report:?}");
    assert_eq!(store.inner().get_request(&workspace(), busy.id()).await.unwrap().status(), RequestStatus::Created);

    Faults::failing(&store.hook().commits, Fault::Fatal, 1);
    let error = service.expire_due(&workspace(), governance_abstractions::Timestamp::now()).await.unwrap_err();
    assert!(matches!(error, GovernanceError::Backend { retryable: false, .. }), "{error:?}");
    let report = service.expire_due(&workspace(), governance_abstractions::Timestamp::now()).await.unwrap();
    assert_eq!(report.expired, vec![busy.id()], "the next sweep expires it");
}

#[tokio::test]
async fn with_one_attempt_allowed_the_failure_comes_back_as_it_was() {
    let store = flaky();
    let (service, request) = service(&store, immediate(1)).await;
    Faults::failing(&store.hook().commits, Fault::Deadlock, 1);
    let by = Actor::user("dana").into();
    let error = service.apply(&workspace(), request.id(), &by, annotate(1)).await.unwrap_err();
    // Nothing was retried, so nothing says it was.
    assert!(matches!(error, GovernanceError::Backend { retryable: true, .. }), "{error:?}");
    assert_eq!(error.attempts(), None, "{error}");
    assert_eq!(store.hook().commit_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn after_a_lost_creation_another_requests_id_is_not_taken_for_ours() {
    let store = flaky();
    let service = GovernanceService::new(store.clone()).with_retry_policy(immediate(5));
    // The first attempt is lost; the retry is told the id belongs to
    // another request: that is the answer, not a request of ours to read.
    Faults::failing(&store.hook().creates, Fault::Lost, 1);
    Faults::failing(&store.hook().creates, Fault::TakenByOther, 1);
    let error = service.create(spec()).await.unwrap_err();
    assert!(
        matches!(&error, GovernanceError::AlreadyExists { kind: governance_abstractions::EntityKind::Request, .. }),
        "{error:?}"
    );
    assert_eq!(store.hook().create_calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn asking_whether_a_lost_commit_landed_is_retried_when_that_can_help() {
    let store = flaky();
    let (service, request) = service(&store, immediate(5)).await;
    // The commit is lost before it reaches the store, and the first
    // question whether it landed fails too (a deadlock): asked again, it
    // did not land, so the change is applied once.
    Faults::failing(&store.hook().commits, Fault::Lost, 1);
    Faults::failing(&store.hook().history_reads, Fault::Deadlock, 1);
    let by = Actor::user("dana").into();
    let done = service.apply(&workspace(), request.id(), &by, annotate(1)).await.unwrap();
    assert_eq!(done.request().revision(), 2);
    assert_eq!(store.hook().commit_calls.load(Ordering::SeqCst), 2);
    let stored = store.inner().get_request(&workspace(), request.id()).await.unwrap();
    assert_eq!(stored.revision(), 2);
    assert_eq!(codes(&store, request.id()).await.len(), 2, "the creation and one annotation");
}

#[tokio::test]
async fn asking_whether_a_lost_commit_landed_stops_on_a_failure_no_retry_can_help() {
    let store = flaky();
    let (service, request) = service(&store, immediate(5)).await;
    Faults::failing(&store.hook().commits, Fault::Lost, 1);
    Faults::failing(&store.hook().history_reads, Fault::Fatal, 1);
    let by = Actor::user("dana").into();
    let error = service.apply(&workspace(), request.id(), &by, annotate(1)).await.unwrap_err();
    assert!(matches!(error, GovernanceError::Backend { retryable: false, .. }), "{error:?}");
    // The one commit, and no second try while it is unknown whether it landed.
    assert_eq!(store.hook().commit_calls.load(Ordering::SeqCst), 1);
    assert_eq!(store.inner().get_request(&workspace(), request.id()).await.unwrap().revision(), 1);
}
