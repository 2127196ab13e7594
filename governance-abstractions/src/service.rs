//! The runtime service: a transition end to end over any store, retried
//! where a retry is safe.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

use crate::lifecycle::{self, Action, Command, Transition};
use crate::{
    Actor, EntityKind, GovernanceError, GovernanceRequest, GovernanceStore, NewRequest, PageRequest, Principal,
    RequestFilter, RequestId, RequestStatus, Result, Stored, Timestamp, TransitionRule, WorkspaceId,
};

/// How [`GovernanceService`] retries a change that failed for a reason that
/// may pass: a [`Conflict`](GovernanceError::Conflict) (another writer got
/// there first: re-read, re-apply), a retryable
/// [`Backend`](GovernanceError::Backend) error (deadlock, serialization
/// failure, a Galera certification failure, a busy SQLite: the transaction
/// was rolled back), and [`Unavailable`](GovernanceError::Unavailable) where
/// a retry cannot apply a change twice (see [`GovernanceService`]).
///
/// Attempts are bounded by a count and a total deadline; between attempts
/// the service waits an exponentially growing delay with full jitter, so
/// racing writers spread out instead of colliding again in step.
///
/// ```
/// use std::time::Duration;
/// use governance_abstractions::RetryPolicy;
///
/// let policy = RetryPolicy::default()
///     .with_max_attempts(20)
///     .with_delays(Duration::from_millis(2), Duration::from_millis(250))
///     .with_deadline(Some(Duration::from_secs(30)));
/// assert_eq!(policy.max_attempts(), 20);
/// assert_eq!(RetryPolicy::never().max_attempts(), 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: u32,
    min_delay: Duration,
    max_delay: Duration,
    deadline: Option<Duration>,
}

impl RetryPolicy {
    /// Attempts per change by default: the first try and up to nine retries.
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;
    /// The first delay's upper bound by default (jitter picks below it).
    pub const DEFAULT_MIN_DELAY: Duration = Duration::from_millis(2);
    /// The longest delay by default.
    pub const DEFAULT_MAX_DELAY: Duration = Duration::from_millis(200);
    /// The total time one change may take by default, waits included.
    pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

    /// One attempt: every failure goes straight to the caller.
    pub const fn never() -> Self {
        Self { max_attempts: 1, ..Self::DEFAULT }
    }

    const DEFAULT: Self = Self {
        max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
        min_delay: Self::DEFAULT_MIN_DELAY,
        max_delay: Self::DEFAULT_MAX_DELAY,
        deadline: Some(Self::DEFAULT_DEADLINE),
    };

    /// At most `attempts` attempts per change, the first included (at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Delays between attempts grow from `min` to at most `max` (doubling,
    /// jittered). `Duration::ZERO` for both retries at once.
    pub fn with_delays(mut self, min: Duration, max: Duration) -> Self {
        self.min_delay = min;
        self.max_delay = max.max(min);
        self
    }

    /// No retry starts once `deadline` has passed since the first attempt
    /// (`None`: only the attempt count bounds retries).
    pub fn with_deadline(mut self, deadline: Option<Duration>) -> Self {
        self.deadline = deadline;
        self
    }

    /// Attempts per change, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The first and the longest delay between attempts.
    pub fn delays(&self) -> (Duration, Duration) {
        (self.min_delay, self.max_delay)
    }

    /// The total time one change may take.
    pub fn deadline(&self) -> Option<Duration> {
        self.deadline
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The attempts of one change under a [`RetryPolicy`].
struct Attempts<'a> {
    policy: &'a RetryPolicy,
    started: Instant,
    made: u32,
    delays: ExponentialBackoff,
}

impl<'a> Attempts<'a> {
    fn new(policy: &'a RetryPolicy) -> Self {
        let delays = ExponentialBuilder::new()
            .with_min_delay(policy.min_delay)
            .with_max_delay(policy.max_delay)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build();
        Self { policy, started: Instant::now(), made: 1, delays }
    }

    /// Waits for the next attempt after `error`, or gives `error` back when
    /// the attempts or the deadline are spent.
    async fn retry_after(&mut self, error: GovernanceError) -> Result<()> {
        if self.made >= self.policy.max_attempts {
            return Err(self.give_up(error));
        }
        let delay = self.delays.next().unwrap_or(self.policy.max_delay);
        if self.policy.deadline.is_some_and(|deadline| self.started.elapsed() + delay > deadline) {
            return Err(self.give_up(error));
        }
        if !delay.is_zero() {
            futures_timer::Delay::new(delay).await;
        }
        self.made += 1;
        Ok(())
    }

    /// `error` as the caller sees it: with the attempts made, when there
    /// were retries.
    fn give_up(&self, error: GovernanceError) -> GovernanceError {
        if self.made > 1 {
            GovernanceError::RetriesExhausted { attempts: self.made, last: Box::new(error) }
        } else {
            error
        }
    }
}

/// How many requests one expiry round reads.
const EXPIRY_BATCH: u32 = 100;

/// What one [`GovernanceService::expire_due`] sweep did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ExpiryReport {
    /// The requests this sweep expired.
    pub expired: Vec<RequestId>,
    /// Due requests that could not be expired, each with why (for example a
    /// stored state that does not match its digest); the sweep went on.
    pub refused: Vec<(RequestId, GovernanceError)>,
}

/// Performs lifecycle changes end to end: read → apply → conditional write
/// with history, retried under a [`RetryPolicy`].
///
/// - A [`Conflict`](GovernanceError::Conflict) or a retryable
///   [`Backend`](GovernanceError::Backend) error re-reads the request and
///   re-applies the action to what is stored now. A re-applied action that
///   the new state no longer allows fails with its
///   [`InvalidTransition`](GovernanceError::InvalidTransition): a retry
///   never overwrites a concurrent change.
/// - [`Unavailable`](GovernanceError::Unavailable) during a commit means the
///   write may have committed. The service retries only where that cannot
///   apply the change twice: a creation is retried as the same request (its
///   id, and its idempotency key if any, make a second insert impossible),
///   and a transition is retried only after a read shows whether it
///   committed — its first history record is stored exactly when it did —
///   so a committed change is returned, not applied again. Reads are always
///   safe to retry.
/// - When the attempts or the deadline run out, the caller gets
///   [`RetriesExhausted`](GovernanceError::RetriesExhausted) with the number
///   of attempts and the last failure (`is_conflict()`, `is_retryable()` and `failure()`
///   look through it). Any other error comes back as it is, at once.
#[derive(Clone)]
pub struct GovernanceService {
    store: Arc<dyn GovernanceStore>,
    policy: RetryPolicy,
}

impl std::fmt::Debug for GovernanceService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GovernanceService").field("policy", &self.policy).finish_non_exhaustive()
    }
}

impl GovernanceService {
    /// Attempts per change by default.
    pub const DEFAULT_MAX_ATTEMPTS: u32 = RetryPolicy::DEFAULT_MAX_ATTEMPTS;

    /// A service over `store`, with the default [`RetryPolicy`].
    pub fn new(store: Arc<dyn GovernanceStore>) -> Self {
        Self { store, policy: RetryPolicy::default() }
    }

    /// Sets the attempts per change (at least 1), keeping the rest of the policy.
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.policy = self.policy.with_max_attempts(attempts);
        self
    }

    /// Sets the whole retry policy.
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn GovernanceStore> {
        &self.store
    }

    /// Creates a request (revision 1, status Created) with its creation record.
    /// Retrying with the same idempotency key and content returns the original.
    ///
    /// Retried as the same request (same id, same record) after a retryable
    /// failure, including a lost connection: if the lost attempt did commit,
    /// the retry finds it (by its idempotency key, or by its id) and returns
    /// it instead of creating a second one.
    pub async fn create(&self, spec: NewRequest) -> Result<Stored<GovernanceRequest>> {
        let creation = lifecycle::create(spec, RequestId::new(), Timestamp::now())?;
        let (workspace, id) = (creation.request().workspace_id(), creation.request().id());
        let mut attempts = Attempts::new(&self.policy);
        let mut uncertain = false;
        loop {
            match self.store.create_request(&creation).await {
                Ok(stored) => return Ok(stored),
                // Our own id: only the lost attempt can have stored it.
                Err(GovernanceError::AlreadyExists { kind: EntityKind::Request, id: taken, .. })
                    if uncertain && taken == id.to_string() =>
                {
                    return self.store.get_request(workspace, id).await.map(Stored::New);
                }
                Err(error) if error.is_retryable() => {
                    uncertain |= matches!(error, GovernanceError::Unavailable { .. });
                    attempts.retry_after(error).await?;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Applies `action` by `by` to request `id`, retrying on conflict.
    /// Returns the committed transition (new state and its records).
    ///
    /// `action` is an [`Action`], or a [`Command`] that also records a reason
    /// and metadata with the change.
    pub async fn apply(
        &self,
        workspace: &WorkspaceId,
        id: RequestId,
        by: &Principal,
        action: impl Into<Command>,
    ) -> Result<Transition> {
        let command = action.into();
        let command = &command;
        self.retrying(workspace, || async move {
            let current = self.store.get_request(workspace, id).await?;
            lifecycle::apply_command(&current, by, command, Timestamp::now())
        })
        .await
    }

    /// Applies `action` by `by` to `held` — the request as the caller has
    /// it, say what [`create`](Self::create) or the previous transition
    /// returned — without reading it first: one round trip when nothing
    /// changed since. The store commits only while the stored request is
    /// still exactly `held` (same revision, status and state digest), so a
    /// stale `held` costs a [`Conflict`](GovernanceError::Conflict), after
    /// which the action is re-applied to a fresh read as in
    /// [`apply`](Self::apply), under the same retry policy.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use governance_abstractions::*;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<()> {
    /// let service = GovernanceService::new(Arc::new(governance_memory::MemoryStore::new()));
    /// let ws = WorkspaceId::new("acme")?;
    /// let spec = NewRequest::new(ws.clone(), TargetRef::new("flag", "f-1"), "enable", Actor::user("dana"));
    /// let created = service.create(spec).await?.into_inner();
    /// let dana: Principal = Actor::user("dana").into();
    /// let submitted =
    ///     service.apply_to(&created, &dana, Action::Submit { reason: PendingReason::Quota }).await?;
    /// assert_eq!(submitted.request().revision(), 2);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn apply_to(
        &self,
        held: &GovernanceRequest,
        by: &Principal,
        action: impl Into<Command>,
    ) -> Result<Transition> {
        let command = action.into();
        let (command, workspace, id) = (&command, held.workspace_id(), held.id());
        // The first attempt starts from `held`; every later one re-reads.
        let first = std::sync::atomic::AtomicBool::new(true);
        self.retrying(workspace, || {
            let from_held = first.swap(false, std::sync::atomic::Ordering::Relaxed);
            async move {
                if from_held {
                    return lifecycle::apply_command(held, by, command, Timestamp::now());
                }
                let current = self.store.get_request(workspace, id).await?;
                lifecycle::apply_command(&current, by, command, Timestamp::now())
            }
        })
        .await
    }

    /// Marks `older` as superseded by `newer`: both in `workspace`, `newer`
    /// unfinished and for the same target.
    pub async fn supersede(
        &self,
        workspace: &WorkspaceId,
        older: RequestId,
        newer: RequestId,
        by: &Principal,
    ) -> Result<Transition> {
        self.supersede_noted(workspace, older, newer, by, None, None).await
    }

    /// [`supersede`](Self::supersede), recording a reason and metadata with
    /// the change (see [`Command`]).
    pub async fn supersede_noted(
        &self,
        workspace: &WorkspaceId,
        older: RequestId,
        newer: RequestId,
        by: &Principal,
        reason: Option<&str>,
        metadata: Option<&serde_json::Value>,
    ) -> Result<Transition> {
        // Both are read again on every attempt: the store commits only while
        // the successor is still at the state read here.
        self.retrying(workspace, || async move {
            let successor = self.store.get_request(workspace, newer).await?;
            let current = self.store.get_request(workspace, older).await?;
            lifecycle::supersede_noted(&current, &successor, by, reason, metadata, Timestamp::now())
        })
        .await
    }

    /// Expires every non-terminal request of `workspace` whose `expires_at` ≤
    /// `now`, and reports which this call expired and which it could not.
    ///
    /// Safe with several sweepers at once: each request is expired by exactly
    /// one of them (the conditional write decides), the others skip it. A
    /// request that keeps conflicting with other writers is left for the next
    /// sweep. A request that cannot be expired for a reason of its own (its
    /// stored state does not match its digest, say) is reported in
    /// [`ExpiryReport::refused`] and the sweep goes on: one bad row never
    /// holds back the rest of the workspace. A store failure ends the sweep
    /// with that error.
    pub async fn expire_due(&self, workspace: &WorkspaceId, now: Timestamp) -> Result<ExpiryReport> {
        let sweeper = Principal::direct(Actor::system("governance.expiry"));
        let mut report = ExpiryReport::default();
        // The filter of `due_for_expiry`, paged: requests this sweep refused
        // stay due, and the next page starts after them.
        let filter = RequestFilter {
            statuses: RequestStatus::ALL.iter().copied().filter(|s| !s.is_terminal()).collect(),
            expires_by: Some(now),
            ..RequestFilter::default()
        };
        let mut page = PageRequest::first(EXPIRY_BATCH);
        loop {
            let due = self.store.query_requests(workspace, &filter, &page).await?;
            for request in &due.items {
                let (id, sweeper) = (request.id(), &sweeper);
                let expire = || async move {
                    let current = self.store.get_request(workspace, id).await?;
                    lifecycle::apply(&current, sweeper, &Action::Expire, now)
                };
                match self.retrying(workspace, expire).await {
                    Ok(_) => report.expired.push(id),
                    // Another sweeper (or a writer) finished it first.
                    Err(GovernanceError::InvalidTransition { rule: TransitionRule::Terminal, .. }) => {}
                    // Busy with other writers: left for the next sweep.
                    Err(error) if error.is_conflict() => {}
                    Err(error)
                        if matches!(
                            error.failure(),
                            GovernanceError::Unavailable { .. } | GovernanceError::Backend { .. }
                        ) =>
                    {
                        return Err(error);
                    }
                    Err(error) => report.refused.push((id, error)),
                }
            }
            match due.next {
                Some(cursor) if due.has_more => page = PageRequest::first(EXPIRY_BATCH).after(cursor),
                _ => return Ok(report),
            }
        }
    }

    /// Read and change (`next`) → conditional commit, under the policy. A
    /// commit that ended in `Unavailable` may have happened: before each
    /// later attempt the store is asked whether its first record exists,
    /// and if it does, that transition is the result.
    async fn retrying<F, Fut>(&self, workspace: &WorkspaceId, next: F) -> Result<Transition>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Transition>>,
    {
        let mut attempts = Attempts::new(&self.policy);
        let mut uncertain: Vec<Transition> = Vec::new();
        loop {
            match self.committed(workspace, &uncertain).await {
                Ok(Some(index)) => return Ok(uncertain.swap_remove(index)),
                Ok(None) => {}
                Err(error) if error.is_retryable() => {
                    attempts.retry_after(error).await?;
                    continue;
                }
                Err(error) => return Err(error),
            }
            let transition = match next().await {
                Ok(transition) => transition,
                // A read that failed on the way: reading again is safe.
                Err(error) if error.is_retryable() => {
                    attempts.retry_after(error).await?;
                    continue;
                }
                Err(error) => return Err(error),
            };
            match self.store.commit_transition(&transition).await {
                Ok(()) => return Ok(transition),
                Err(error @ GovernanceError::Unavailable { .. }) => {
                    uncertain.push(transition);
                    attempts.retry_after(error).await?;
                }
                Err(error) if error.is_retryable() => attempts.retry_after(error).await?,
                Err(error) => return Err(error),
            }
        }
    }

    /// Which of `transitions` (each of whose commits was lost) is stored:
    /// a transition and its records commit together, and record ids are
    /// unique, so its first record tells.
    async fn committed(&self, workspace: &WorkspaceId, transitions: &[Transition]) -> Result<Option<usize>> {
        for (index, transition) in transitions.iter().enumerate() {
            let Some(record) = transition.records().first() else { continue };
            match self.store.get_history_record(workspace, record.id()).await {
                Ok(_) => return Ok(Some(index)),
                Err(error) if error.is_not_found() => {}
                Err(error) => return Err(error),
            }
        }
        Ok(None)
    }
}
