//! Tenant isolation, query filters and keyset pagination.

use governance_abstractions::{
    Action, Actor, CountBy, CountQuery, Cursor, Decision, GovernanceError, GovernanceRequest, HistoryFilter,
    HistoryRecord, Page, PageRequest, PendingReason, RequestFilter, RequestId, RequestStatus, TimeRange, Timestamp,
    lifecycle,
};

use crate::fixtures::*;
use crate::harness::{CaseContext, CaseFailure, CaseResult};

fn ids(requests: &[GovernanceRequest]) -> Vec<RequestId> {
    requests.iter().map(|r| r.id()).collect()
}

async fn query_ids(ctx: &CaseContext, filter: RequestFilter) -> Result<Vec<RequestId>, CaseFailure> {
    Ok(ids(&ctx.store.query_requests(&ctx.workspace, &filter, &PageRequest::all()).await?.items))
}

/// A request is invisible from another workspace: get is NotFound, lists are empty.
pub async fn isolation_reads_scoped(ctx: CaseContext) -> CaseResult {
    let request = drive(&ctx, spec(&ctx), RequestStatus::Pending).await?;
    let other = ctx.other_workspace();
    let e = expect_err(ctx.store.get_request(&other, request.id()).await, "get from another workspace")?;
    ensure!(e.is_not_found(), "expected NotFound, got {e:?}");
    let page = ctx.store.query_requests(&other, &RequestFilter::default(), &PageRequest::all()).await?;
    ensure!(page.items.is_empty(), "query in another workspace: {:?}", page.items);
    ensure!(ctx.store.pending_requests(&other, None, &PageRequest::all()).await?.items.is_empty(), "pending elsewhere");
    ensure!(ctx.store.requests_for_target(&other, &request.spec().target).await?.is_empty(), "target elsewhere");
    ensure!(ctx.store.history_for_request(&other, request.id()).await?.is_empty(), "history elsewhere");
    let history = ctx.store.query_history(&other, &HistoryFilter::default(), &PageRequest::all()).await?;
    ensure!(history.items.is_empty(), "history query elsewhere: {:?}", history.items);
    let first = ctx.store.history_for_request(&ctx.workspace, request.id()).await?;
    if let Some(record) = first.first() {
        let e = expect_err(ctx.store.get_history_record(&other, record.id()).await, "record from another workspace")?;
        ensure!(e.is_not_found(), "expected NotFound, got {e:?}");
    }
    append(&ctx, evidence(&ctx, Decision::Denied)).await?;
    let counts = ctx.store.count_history(&other, &CountQuery::new(CountBy::Decision, Default::default())).await?;
    ensure!(counts.is_empty(), "counts elsewhere: {counts:?}");
    let by_request = HistoryFilter { request_id: Some(request.id()), ..HistoryFilter::default() };
    ensure!(ctx.store.query_history(&other, &by_request, &PageRequest::all()).await?.items.is_empty(), "by request");
    let due = create(&ctx, spec(&ctx).expires_at(past())).await?;
    ensure!(ctx.store.due_for_expiry(&other, Timestamp::now(), 10).await?.is_empty(), "due elsewhere");
    ensure!(
        ctx.service.expire_due(&other, Timestamp::now()).await?.expired.is_empty(),
        "a sweep elsewhere expires nothing"
    );
    ensure_eq!(
        ctx.store.get_request(&ctx.workspace, due.id()).await?.status(),
        RequestStatus::Created,
        "still due here"
    );
    Ok(())
}

/// The same request id in two workspaces names two independent requests.
pub async fn isolation_same_ids_independent(ctx: CaseContext) -> CaseResult {
    let other = ctx.other_workspace();
    let id = RequestId::new();
    let here = lifecycle::create(spec(&ctx), id, Timestamp::now())?;
    let there = lifecycle::create(spec_in(&other).intent("there"), id, Timestamp::now())?;
    ctx.store.create_request(&here).await?;
    ctx.store.create_request(&there).await?;
    let next = lifecycle::apply(here.request(), &requester(), &Action::Approve, Timestamp::now())?;
    ctx.store.commit_transition(&next).await?;
    ensure_eq!(ctx.store.get_request(&ctx.workspace, id).await?.status(), RequestStatus::Approved, "here");
    let there_now = ctx.store.get_request(&other, id).await?;
    ensure_eq!((there_now.status(), there_now.revision()), (RequestStatus::Created, 1), "there is untouched");
    ensure_eq!(ctx.store.history_for_request(&other, id).await?.len(), 1, "history there is its own");
    let record = HistoryRecord::new(evidence(&ctx, Decision::Denied), Timestamp::now())?;
    let mut twin = evidence(&ctx, Decision::Approved);
    twin.workspace_id = other.clone();
    let twin = HistoryRecord::with_id(record.id(), twin, Timestamp::now())?;
    ctx.store.append_history(std::slice::from_ref(&record)).await?;
    let stored = ctx.store.append_history(std::slice::from_ref(&twin)).await?;
    ensure!(!stored[0].is_replay(), "one record id in two workspaces is two records");
    ensure_eq!(ctx.store.get_history_record(&other, record.id()).await?, twin, "there");
    ensure_eq!(ctx.store.get_history_record(&ctx.workspace, record.id()).await?, record, "here");
    Ok(())
}

/// Status filter, alone and with several statuses.
pub async fn query_filter_status(ctx: CaseContext) -> CaseResult {
    let created = request_in(&ctx, RequestStatus::Created).await?;
    let pending = request_in(&ctx, RequestStatus::Pending).await?;
    let approved = request_in(&ctx, RequestStatus::Approved).await?;
    let filter = |statuses| RequestFilter { statuses, ..RequestFilter::default() };
    ensure_eq!(query_ids(&ctx, filter(vec![RequestStatus::Pending])).await?, vec![pending.id()], "pending");
    ensure_eq!(
        query_ids(&ctx, filter(vec![RequestStatus::Approved, RequestStatus::Created])).await?,
        vec![created.id(), approved.id()],
        "approved or created, in creation order"
    );
    ensure!(query_ids(&ctx, filter(vec![RequestStatus::Executed])).await?.is_empty(), "none executed");
    Ok(())
}

/// Pending reason filter and the pending queue.
pub async fn query_filter_pending_reason(ctx: CaseContext) -> CaseResult {
    let approval = create(&ctx, spec(&ctx).approval(Actor::user("lead"), 1)).await?;
    act(&ctx, approval.id(), &requester(), Action::Submit { reason: PendingReason::Approval }).await?;
    let quota = create(&ctx, spec(&ctx)).await?;
    act(&ctx, quota.id(), &requester(), Action::Submit { reason: PendingReason::Quota }).await?;
    request_in(&ctx, RequestStatus::Approved).await?;
    let all = PageRequest::all();
    let queue = |reason| ctx.store.pending_requests(&ctx.workspace, reason, &all);
    ensure_eq!(ids(&queue(None).await?.items), vec![approval.id(), quota.id()], "every pending request");
    ensure_eq!(ids(&queue(Some(PendingReason::Approval)).await?.items), vec![approval.id()], "awaiting approval");
    ensure_eq!(ids(&queue(Some(PendingReason::Quota)).await?.items), vec![quota.id()], "awaiting quota");
    ensure!(queue(Some(PendingReason::Schedule)).await?.items.is_empty(), "none scheduled");
    let filter = RequestFilter { pending_reason: Some(PendingReason::Quota), ..RequestFilter::default() };
    ensure_eq!(query_ids(&ctx, filter).await?, vec![quota.id()], "query by pending reason");
    Ok(())
}

/// Actor, operation and category filters.
pub async fn query_filter_actor_operation_category(ctx: CaseContext) -> CaseResult {
    let mut by_bob = spec(&ctx).category("release");
    by_bob.requested_by = Actor::user("bob").into();
    let bob = create(&ctx, by_bob).await?;
    let mut delete = spec(&ctx).category("cleanup");
    delete.operation = "delete".into();
    let deleter = create(&ctx, delete).await?;
    let plain = create(&ctx, spec(&ctx)).await?;
    let f = RequestFilter::default;
    ensure_eq!(
        query_ids(&ctx, RequestFilter { actor: Some(Actor::user("bob")), ..f() }).await?,
        vec![bob.id()],
        "actor"
    );
    ensure_eq!(
        query_ids(&ctx, RequestFilter { actor: Some(Actor::user("requester")), ..f() }).await?,
        vec![deleter.id(), plain.id()],
        "actor"
    );
    ensure_eq!(
        query_ids(&ctx, RequestFilter { operation: Some("delete".into()), ..f() }).await?,
        vec![deleter.id()],
        "operation"
    );
    ensure_eq!(
        query_ids(&ctx, RequestFilter { category: Some("release".into()), ..f() }).await?,
        vec![bob.id()],
        "category"
    );
    ensure!(
        query_ids(&ctx, RequestFilter { category: Some("none".into()), ..f() }).await?.is_empty(),
        "no category match"
    );
    Ok(())
}

/// Tags filter: a request matches when it carries every tag asked for.
pub async fn query_filter_tags(ctx: CaseContext) -> CaseResult {
    let both = create(&ctx, spec(&ctx).tag("prod").tag("eu")).await?;
    let prod = create(&ctx, spec(&ctx).tag("prod")).await?;
    create(&ctx, spec(&ctx).tag("dev")).await?;
    let tags =
        |t: &[&str]| RequestFilter { tags: t.iter().map(|s| s.to_string()).collect(), ..RequestFilter::default() };
    ensure_eq!(query_ids(&ctx, tags(&["prod"])).await?, vec![both.id(), prod.id()], "prod");
    ensure_eq!(query_ids(&ctx, tags(&["prod", "eu"])).await?, vec![both.id()], "prod and eu");
    ensure!(query_ids(&ctx, tags(&["eu", "dev"])).await?.is_empty(), "no request has both");
    Ok(())
}

/// Created-at window `[from, until)` and combined filters.
pub async fn query_filter_time_range_and_combined(ctx: CaseContext) -> CaseResult {
    let mut made = Vec::new();
    for offset in 0..5 {
        let spec = if offset % 2 == 0 { spec(&ctx).tag("even") } else { spec(&ctx) };
        made.push(create_at(&ctx, spec, instant(offset * 60)).await?.id());
    }
    let window = TimeRange::between(instant(60), instant(180));
    let filter = RequestFilter { created: window, ..RequestFilter::default() };
    ensure_eq!(query_ids(&ctx, filter).await?, made[1..3].to_vec(), "[+60s, +180s)");
    let from =
        RequestFilter { created: TimeRange { from: Some(instant(120)), until: None }, ..RequestFilter::default() };
    ensure_eq!(query_ids(&ctx, from).await?, made[2..].to_vec(), "from +120s");
    let combined = RequestFilter {
        created: TimeRange { from: Some(instant(60)), until: None },
        tags: vec!["even".into()],
        statuses: vec![RequestStatus::Created],
        ..RequestFilter::default()
    };
    ensure_eq!(query_ids(&ctx, combined).await?, vec![made[2], made[4]], "window + tag + status");
    Ok(())
}

/// Requests for a target, and empty results that are empty (not errors).
pub async fn query_by_target_and_empty(ctx: CaseContext) -> CaseResult {
    let first = create(&ctx, spec(&ctx)).await?;
    let mut again = spec(&ctx);
    again.target = first.spec().target.clone();
    let second = create(&ctx, again).await?;
    create(&ctx, spec(&ctx)).await?;
    let for_target = ctx.store.requests_for_target(&ctx.workspace, &first.spec().target).await?;
    ensure_eq!(ids(&for_target), vec![first.id(), second.id()], "both requests for the target");
    let nothing = governance_abstractions::TargetRef::new("flag", "never-used");
    ensure!(ctx.store.requests_for_target(&ctx.workspace, &nothing).await?.is_empty(), "unknown target");
    let empty = ctx.other_workspace();
    let page = ctx.store.query_requests(&empty, &RequestFilter::default(), &PageRequest::first(10)).await?;
    ensure!(page.items.is_empty() && !page.has_more && page.next.is_none(), "empty workspace page: {page:?}");
    Ok(())
}

/// Reads every page of `filter` with `page_size`, in `backward` or forward order.
async fn walk(ctx: &CaseContext, page_size: Option<u32>, backward: bool) -> Result<Vec<RequestId>, CaseFailure> {
    let mut seen = Vec::new();
    let mut request = PageRequest { limit: page_size, ..PageRequest::default() };
    if backward {
        request = request.backward();
    }
    for _ in 0..1_000 {
        let page: Page<GovernanceRequest> =
            ctx.store.query_requests(&ctx.workspace, &RequestFilter::default(), &request).await?;
        if let Some(limit) = page_size {
            ensure!(page.items.len() <= limit as usize, "page of {} rows exceeds size {limit}", page.items.len());
        }
        seen.extend(ids(&page.items));
        if !page.has_more {
            return Ok(seen);
        }
        ensure!(!page.items.is_empty(), "a page with more rows after it returned no rows");
        request.cursor = page.next;
    }
    Err(CaseFailure("paging did not end".into()))
}

/// Stores `n` requests whose ids run against their creation times (the
/// newest row gets the smallest id) in groups of `same_time` equal
/// timestamps; returns them in `(created_at, id)` order.
async fn rows_against_time(ctx: &CaseContext, n: usize, same_time: usize) -> Result<Vec<RequestId>, CaseFailure> {
    let mut ids: Vec<RequestId> = (0..n).map(|_| RequestId::new()).collect();
    ids.reverse();
    let mut rows = Vec::new();
    for (index, id) in ids.into_iter().enumerate() {
        let at = instant((index / same_time) as i64);
        let creation = lifecycle::create(spec(ctx), id, at)?;
        ctx.store.create_request(&creation).await?;
        rows.push((at, id.as_uuid(), id));
    }
    rows.sort();
    Ok(rows.into_iter().map(|(_, _, id)| id).collect())
}

/// Page sizes 1, 2, 7 and unbounded give the same rows in the same order,
/// both ways, with ids that run against time and timestamps that repeat.
pub async fn paging_sizes_agree(ctx: CaseContext) -> CaseResult {
    let want = rows_against_time(&ctx, 15, 2).await?;
    for size in [Some(1), Some(2), Some(7), None] {
        ensure_eq!(walk(&ctx, size, false).await?, want, "forward with page size {size:?}");
        let mut reversed = want.clone();
        reversed.reverse();
        ensure_eq!(walk(&ctx, size, true).await?, reversed, "backward with page size {size:?}");
    }
    Ok(())
}

/// Rows sharing one timestamp are ordered by id (not by insertion) and paged
/// without duplicates or gaps.
pub async fn paging_equal_timestamps(ctx: CaseContext) -> CaseResult {
    let want = rows_against_time(&ctx, 9, 9).await?;
    for size in [Some(1), Some(2), Some(4), None] {
        ensure_eq!(walk(&ctx, size, false).await?, want, "forward, size {size:?}");
        let mut reversed = want.clone();
        reversed.reverse();
        ensure_eq!(walk(&ctx, size, true).await?, reversed, "backward, size {size:?}");
    }
    Ok(())
}

/// Rows created while a reader pages are neither duplicated nor make it skip
/// rows; the new rows appear after the old ones.
pub async fn paging_rows_arriving(ctx: CaseContext) -> CaseResult {
    let mut old = Vec::new();
    for offset in 0..6 {
        old.push(create_at(&ctx, spec(&ctx), instant(offset)).await?.id());
    }
    let mut seen = Vec::new();
    let mut arrived = Vec::new();
    let mut request = PageRequest::first(2);
    loop {
        let page = ctx.store.query_requests(&ctx.workspace, &RequestFilter::default(), &request).await?;
        seen.extend(ids(&page.items));
        if arrived.len() < 3 {
            arrived.push(create(&ctx, spec(&ctx)).await?.id());
        }
        if !page.has_more {
            break;
        }
        request.cursor = page.next;
        ensure!(seen.len() < 100, "paging did not end");
    }
    let mut want = old.clone();
    want.extend(&arrived);
    ensure_eq!(seen, want, "old rows once each, in order, then the new ones");
    Ok(())
}

/// A reader at the end keeps its cursor and later sees exactly the new rows.
pub async fn paging_resume_after_end(ctx: CaseContext) -> CaseResult {
    for offset in 0..3 {
        create_at(&ctx, spec(&ctx), instant(offset)).await?;
    }
    let page = ctx.store.query_requests(&ctx.workspace, &RequestFilter::default(), &PageRequest::first(10)).await?;
    ensure!(!page.has_more && page.items.len() == 3, "first page holds all three: {}", page.items.len());
    let cursor = page.next.ok_or_else(|| CaseFailure("a non-empty page returns a cursor".into()))?;
    let empty = ctx
        .store
        .query_requests(&ctx.workspace, &RequestFilter::default(), &PageRequest::first(10).after(cursor.clone()))
        .await?;
    ensure!(empty.items.is_empty(), "nothing after the end yet");
    ensure_eq!(empty.next.as_ref(), Some(&cursor), "an empty page keeps the cursor");
    let later = create(&ctx, spec(&ctx)).await?;
    let resumed = ctx
        .store
        .query_requests(&ctx.workspace, &RequestFilter::default(), &PageRequest::first(10).after(cursor))
        .await?;
    ensure_eq!(ids(&resumed.items), vec![later.id()], "only the new row");
    Ok(())
}

/// A page size of 0 is a validation error, and a cursor is only valid in the
/// direction it was made for.
pub async fn paging_bad_requests(ctx: CaseContext) -> CaseResult {
    create(&ctx, spec(&ctx)).await?;
    let all = RequestFilter::default();
    let e = expect_err(ctx.store.query_requests(&ctx.workspace, &all, &PageRequest::first(0)).await, "limit 0")?;
    ensure!(matches!(e, GovernanceError::Validation { .. }), "expected a validation error, got {e:?}");
    let forward = ctx.store.query_requests(&ctx.workspace, &all, &PageRequest::first(1)).await?;
    let cursor = forward.next.ok_or_else(|| CaseFailure("expected a cursor".into()))?;
    let backward = PageRequest::first(1).backward().after(cursor);
    let e = expect_err(ctx.store.query_requests(&ctx.workspace, &all, &backward).await, "cursor reversed")?;
    ensure!(matches!(e, GovernanceError::InvalidCursor { .. }), "expected InvalidCursor, got {e:?}");
    Ok(())
}

/// Cursors that the library did not produce are InvalidCursor on every read.
pub async fn paging_invalid_cursor(ctx: CaseContext) -> CaseResult {
    create(&ctx, spec(&ctx)).await?;
    let valid = ctx.store.query_requests(&ctx.workspace, &RequestFilter::default(), &PageRequest::first(1)).await?;
    let valid = valid.next.ok_or_else(|| CaseFailure("expected a cursor".into()))?;
    let truncated = valid.as_str()[..valid.as_str().len() - 1].to_owned();
    let tampered = valid.as_str().replacen('g', "x", 1);
    for bad in [
        "",
        "garbage",
        "g1fzzzz",
        truncated.as_str(),
        tampered.as_str(),
        "g1fffffffffffffffff00000000000000000000000000000000",
    ] {
        let page = PageRequest::first(5).after(Cursor::from(bad));
        let e = expect_err(
            ctx.store.query_requests(&ctx.workspace, &RequestFilter::default(), &page).await,
            "request query",
        )?;
        ensure!(
            matches!(e, GovernanceError::InvalidCursor { .. }),
            "cursor {bad:?}: expected InvalidCursor, got {e:?}"
        );
        let e = expect_err(
            ctx.store.query_history(&ctx.workspace, &HistoryFilter::default(), &page).await,
            "history query",
        )?;
        ensure!(
            matches!(e, GovernanceError::InvalidCursor { .. }),
            "cursor {bad:?}: expected InvalidCursor, got {e:?}"
        );
        let e = expect_err(ctx.store.pending_requests(&ctx.workspace, None, &page).await, "pending queue")?;
        ensure!(
            matches!(e, GovernanceError::InvalidCursor { .. }),
            "cursor {bad:?}: expected InvalidCursor, got {e:?}"
        );
    }
    Ok(())
}

/// History pages the same way: sizes agree, both directions, filters hold.
pub async fn paging_history(ctx: CaseContext) -> CaseResult {
    let mut want = Vec::new();
    for offset in 0..11 {
        let decision = if offset % 3 == 0 {
            governance_abstractions::Decision::Denied
        } else {
            governance_abstractions::Decision::Approved
        };
        want.push(append_at(&ctx, evidence(&ctx, decision), instant(offset / 2)).await?.id());
    }
    let all: Vec<_> =
        ctx.store.query_history(&ctx.workspace, &HistoryFilter::default(), &PageRequest::all()).await?.items;
    let ordered: Vec<_> = all.iter().map(|r| (r.created_at(), r.id().as_uuid())).collect();
    let mut sorted = ordered.clone();
    sorted.sort();
    ensure_eq!(ordered, sorted, "history is in (created_at, id) order");
    let mut stored: Vec<_> = all.iter().map(|r| r.id()).collect();
    stored.sort();
    want.sort();
    ensure_eq!(stored, want, "every record, once");
    for size in [1u32, 2, 7] {
        for backward in [false, true] {
            let mut request = PageRequest::first(size);
            if backward {
                request = request.backward();
            }
            let filter =
                HistoryFilter { decision: Some(governance_abstractions::Decision::Denied), ..HistoryFilter::default() };
            let mut seen = Vec::new();
            loop {
                let page = ctx.store.query_history(&ctx.workspace, &filter, &request).await?;
                ensure!(page.items.len() <= size as usize, "page size honoured");
                seen.extend(page.items.iter().map(|r| r.id()));
                if !page.has_more {
                    break;
                }
                request.cursor = page.next;
            }
            let mut denied: Vec<_> = all
                .iter()
                .filter(|r| r.evidence().decision == Some(governance_abstractions::Decision::Denied))
                .map(|r| r.id())
                .collect();
            if backward {
                denied.reverse();
            }
            ensure_eq!(seen, denied, "denied records, size {size}, backward {backward}");
        }
    }
    Ok(())
}

/// A last page holding exactly the remaining rows says there are no more,
/// both ways, for requests and history; a cursor handed out as text and read
/// back (what a client does) resumes at the same place.
pub async fn paging_exact_last_page_and_text_cursors(ctx: CaseContext) -> CaseResult {
    let want = rows_against_time(&ctx, 4, 1).await?;
    for backward in [false, true] {
        let mut page = PageRequest::first(2);
        if backward {
            page = page.backward();
        }
        let first = ctx.store.query_requests(&ctx.workspace, &RequestFilter::default(), &page).await?;
        ensure!(first.has_more, "two of four rows: more to come (backward: {backward})");
        let text = first.next.as_ref().map(|c| c.to_string()).ok_or_else(|| CaseFailure("no cursor".into()))?;
        ensure_eq!(first.next.as_ref().map(|c| c.as_str().to_owned()), Some(text.clone()), "Display is as_str");
        let resumed = page.clone().after(Cursor::from(text.as_str()));
        let second = ctx.store.query_requests(&ctx.workspace, &RequestFilter::default(), &resumed).await?;
        ensure_eq!(second.items.len(), 2, "the remaining two rows");
        ensure!(!second.has_more, "a last page of exactly the remaining rows has no more (backward: {backward})");
        let mut seen = ids(&first.items);
        seen.extend(ids(&second.items));
        let mut expected = want.clone();
        if backward {
            expected.reverse();
        }
        ensure_eq!(seen, expected, "both pages in order (backward: {backward})");
        let end = second.next.ok_or_else(|| CaseFailure("no cursor after the last page".into()))?;
        let after_end = page.clone().after(Cursor::from(end.to_string()));
        let empty = ctx.store.query_requests(&ctx.workspace, &RequestFilter::default(), &after_end).await?;
        ensure!(empty.items.is_empty() && !empty.has_more, "nothing after the end: {empty:?}");
    }
    for n in 0..3 {
        append_at(&ctx, evidence(&ctx, Decision::Denied), instant(n)).await?;
    }
    let filter = HistoryFilter {
        category: Some(governance_abstractions::HistoryCategory::Decision),
        ..HistoryFilter::default()
    };
    let first = ctx.store.query_history(&ctx.workspace, &filter, &PageRequest::first(2)).await?;
    ensure!(first.has_more, "two of three records: more to come");
    let cursor = first.next.map(|c| Cursor::from(c.to_string())).ok_or_else(|| CaseFailure("no cursor".into()))?;
    let second = ctx.store.query_history(&ctx.workspace, &filter, &PageRequest::first(1).after(cursor)).await?;
    ensure!(second.items.len() == 1 && !second.has_more, "the last record alone, no more: {second:?}");
    Ok(())
}
