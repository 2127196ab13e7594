//! Faults in front of a real store: the provider behind is the real one,
//! only what reaches it (and what comes back) is changed. [`Unplugged`]
//! switches a history writer's reachability for the failure-policy cases;
//! [`Hooked`] runs a [`Hook`] around every call of a whole store.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use governance_abstractions::{
    Checkpoint, Count, CountQuery, Creation, GovernanceError, GovernanceRequest, GovernanceStore, HistoryFilter,
    HistoryReader, HistoryRecord, HistoryWriter, IntegrityStore, Page, PageRequest, Position, ReadRecord, RecordId,
    RequestFilter, RequestId, RequestReader, RequestWriter, Result, SealEntry, SealedRecord, Stored, Transition,
    WorkspaceId,
};

/// A [`HistoryWriter`] that forwards to a real store until it is unplugged.
pub struct Unplugged {
    inner: Arc<dyn HistoryWriter>,
    down: AtomicBool,
    /// After this many successful appends, each further append still
    /// reaches the store but never returns (a process killed mid-call).
    stall_after: AtomicUsize,
    appends: AtomicUsize,
}

impl Unplugged {
    /// Forwards to `inner`, reachable.
    pub fn new(inner: Arc<dyn HistoryWriter>) -> Self {
        Self {
            inner,
            down: AtomicBool::new(false),
            stall_after: AtomicUsize::new(usize::MAX),
            appends: AtomicUsize::new(0),
        }
    }

    /// Makes every call fail as if the server did not answer (or answer again).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// After `appends` more successful appends, further appends are stored
    /// but never return.
    pub fn stall_after(&self, appends: usize) {
        self.appends.store(0, Ordering::SeqCst);
        self.stall_after.store(appends, Ordering::SeqCst);
    }

    /// Appends that reached the store since the last [`stall_after`](Self::stall_after).
    pub fn appends(&self) -> usize {
        self.appends.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl HistoryWriter for Unplugged {
    async fn append_history(&self, records: &[HistoryRecord]) -> Result<Vec<Stored<HistoryRecord>>> {
        if self.down.load(Ordering::SeqCst) {
            let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused (unplugged)");
            return Err(GovernanceError::Unavailable { source: Box::new(refused) });
        }
        let stored = self.inner.append_history(records).await?;
        let done = self.appends.fetch_add(1, Ordering::SeqCst) + 1;
        if done > self.stall_after.load(Ordering::SeqCst) {
            // Stored, but the caller never hears back.
            std::future::pending::<()>().await;
        }
        Ok(stored)
    }
}

/// One call of a [`Hooked`] store, with what it writes (or the request it
/// reads) where a hook may want it.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Call<'a> {
    /// [`RequestWriter::create_request`].
    CreateRequest(&'a Creation),
    /// [`RequestWriter::commit_transition`].
    CommitTransition(&'a Transition),
    /// [`RequestReader::get_request`].
    GetRequest(&'a WorkspaceId, RequestId),
    /// [`RequestReader::query_requests`].
    QueryRequests,
    /// [`HistoryWriter::append_history`].
    AppendHistory(&'a [HistoryRecord]),
    /// A read of [`HistoryReader`].
    ReadHistory,
    /// [`IntegrityStore::append_checkpoint`].
    AppendCheckpoint(&'a Checkpoint),
    /// A read of [`IntegrityStore`].
    ReadIntegrity,
}

/// What a [`Hooked`] store does around each call it forwards: fail it,
/// make another writer act first, or watch what it returned.
#[async_trait]
pub trait Hook: Send + Sync {
    /// Runs before `call` reaches `store`; an error is the caller's answer
    /// and the store is not called.
    async fn before(&self, store: &dyn GovernanceStore, call: Call<'_>) -> Result<()> {
        let _ = (store, call);
        Ok(())
    }

    /// Sees how `call` ended (`Some` error when the store failed it); an
    /// error returned here is the caller's answer instead (a reply lost
    /// after the store committed, say).
    fn after(&self, call: Call<'_>, error: Option<&GovernanceError>) -> Option<GovernanceError> {
        let _ = (call, error);
        None
    }
}

/// A real store behind a [`Hook`]: every call is forwarded, with the hook
/// run before and after it. For cases and tests that need a store to fail,
/// race or report in a controlled way, without repeating the traits'
/// forwarding.
pub struct Hooked<H> {
    inner: Arc<dyn GovernanceStore>,
    hook: H,
}

impl<H: Hook> Hooked<H> {
    /// `inner` behind `hook`.
    pub fn new(inner: Arc<dyn GovernanceStore>, hook: H) -> Self {
        Self { inner, hook }
    }

    /// The store behind the hook, for reading what really happened.
    pub fn inner(&self) -> &Arc<dyn GovernanceStore> {
        &self.inner
    }

    /// The hook.
    pub fn hook(&self) -> &H {
        &self.hook
    }

    async fn run<T: Send>(&self, call: Call<'_>, forward: impl Future<Output = Result<T>> + Send) -> Result<T> {
        self.hook.before(self.inner.as_ref(), call).await?;
        let result = forward.await;
        match self.hook.after(call, result.as_ref().err()) {
            Some(error) => Err(error),
            None => result,
        }
    }
}

#[async_trait]
impl<H: Hook> RequestWriter for Hooked<H> {
    async fn create_request(&self, creation: &Creation) -> Result<Stored<GovernanceRequest>> {
        self.run(Call::CreateRequest(creation), self.inner.create_request(creation)).await
    }

    async fn commit_transition(&self, transition: &Transition) -> Result<()> {
        self.run(Call::CommitTransition(transition), self.inner.commit_transition(transition)).await
    }
}

#[async_trait]
impl<H: Hook> RequestReader for Hooked<H> {
    async fn get_request(&self, workspace: &WorkspaceId, id: RequestId) -> Result<GovernanceRequest> {
        self.run(Call::GetRequest(workspace, id), self.inner.get_request(workspace, id)).await
    }

    async fn query_requests(
        &self,
        workspace: &WorkspaceId,
        filter: &RequestFilter,
        page: &PageRequest,
    ) -> Result<Page<GovernanceRequest>> {
        self.run(Call::QueryRequests, self.inner.query_requests(workspace, filter, page)).await
    }
}

#[async_trait]
impl<H: Hook> HistoryWriter for Hooked<H> {
    async fn append_history(&self, records: &[HistoryRecord]) -> Result<Vec<Stored<HistoryRecord>>> {
        self.run(Call::AppendHistory(records), self.inner.append_history(records)).await
    }
}

#[async_trait]
impl<H: Hook> HistoryReader for Hooked<H> {
    async fn get_history_record(&self, workspace: &WorkspaceId, id: RecordId) -> Result<HistoryRecord> {
        self.run(Call::ReadHistory, self.inner.get_history_record(workspace, id)).await
    }

    async fn history_for_request(&self, workspace: &WorkspaceId, request: RequestId) -> Result<Vec<HistoryRecord>> {
        self.run(Call::ReadHistory, self.inner.history_for_request(workspace, request)).await
    }

    async fn query_history(
        &self,
        workspace: &WorkspaceId,
        filter: &HistoryFilter,
        page: &PageRequest,
    ) -> Result<Page<HistoryRecord>> {
        self.run(Call::ReadHistory, self.inner.query_history(workspace, filter, page)).await
    }

    async fn count_history(&self, workspace: &WorkspaceId, query: &CountQuery) -> Result<Vec<Count>> {
        self.run(Call::ReadHistory, self.inner.count_history(workspace, query)).await
    }
}

#[async_trait]
impl<H: Hook> IntegrityStore for Hooked<H> {
    async fn unsealed_history(
        &self,
        workspace: &WorkspaceId,
        after: Option<Position>,
        limit: u32,
    ) -> Result<Vec<ReadRecord>> {
        self.run(Call::ReadIntegrity, self.inner.unsealed_history(workspace, after, limit)).await
    }

    async fn append_checkpoint(&self, checkpoint: &Checkpoint, entries: &[SealEntry]) -> Result<()> {
        self.run(Call::AppendCheckpoint(checkpoint), self.inner.append_checkpoint(checkpoint, entries)).await
    }

    async fn checkpoints(&self, workspace: &WorkspaceId, after: u64, limit: u32) -> Result<Vec<Checkpoint>> {
        self.run(Call::ReadIntegrity, self.inner.checkpoints(workspace, after, limit)).await
    }

    async fn latest_checkpoint(&self, workspace: &WorkspaceId) -> Result<Option<Checkpoint>> {
        self.run(Call::ReadIntegrity, self.inner.latest_checkpoint(workspace)).await
    }

    async fn sealed_records(&self, workspace: &WorkspaceId, from: u64, limit: u32) -> Result<Vec<SealedRecord>> {
        self.run(Call::ReadIntegrity, self.inner.sealed_records(workspace, from, limit)).await
    }
}
