//! What the shared suite cannot see: the caller's transaction, migrations,
//! and the in-memory SQLite pool. Runs on SQLite always, and on PostgreSQL and
//! MySQL when their URLs are set (a failure when they must be).

use std::sync::Arc;

use governance_abstractions::provider::TRANSITION_COLUMNS;
use governance_abstractions::{
    Action, Actor, Checkpoint, CountBy, CountQuery, Creation, Decision, EntityKind, Evidence, GovernanceError,
    GovernanceRequest, GovernanceService, HistoryReader, HistoryRecord, HistoryWriter, IntegrityStore, NewRequest,
    PendingReason, Position, Principal, ReadRecord, RecordId, RequestId, RequestReader, RequestStatus, RequestWriter,
    SealEntry, SealedRecord, StaleStrategy, TargetRef, TimeRange, Timestamp, Unreadable, Verdict, WorkspaceId,
    lifecycle,
};
use governance_seaorm::entity::{history, insert_statement, request, seal};
use governance_seaorm::sea_orm::{
    ActiveModelTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, ExecResult, IdenStatic, IntoActiveModel,
    Iterable, ModelTrait, Statement, Value,
};
use governance_seaorm::{Migrator, SeaOrmStore};
use governance_test_support::{Server, fresh_database, server_url, setup_fails};
use sea_orm_migration::MigratorTrait;

/// Stores to test on: a SQLite file, and each configured server.
async fn stores() -> Vec<(String, SeaOrmStore, tempfile::TempDir)> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let sqlite = SeaOrmStore::open_sqlite(dir.path().join("g.db")).await.expect("SQLite opens");
    let mut stores = vec![("sqlite".to_owned(), sqlite, dir)];
    for (server, backend) in [(Server::Postgres, DbBackend::Postgres), (Server::MySql, DbBackend::MySql)] {
        let url = match server_url(server).await {
            Ok(url) => fresh_database(&url, server).await,
            Err(error) => Err(error),
        };
        match url {
            Ok(url) => {
                let store = SeaOrmStore::connect(&url).await.expect("server answers");
                store.migrate().await.expect("migrates");
                stores.push((format!("{backend:?}"), store, tempfile::tempdir().expect("temporary directory")));
            }
            Err(error) if setup_fails(&error) => panic!("{}: {error}", server.variable()),
            Err(error) => {
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "SKIPPED {backend:?}: {error}");
            }
        }
    }
    stores
}

fn workspace() -> WorkspaceId {
    WorkspaceId::new(format!("t-{}", uuid::Uuid::now_v7().simple())).expect("valid id")
}

/// The application's own table, beside the governance tables.
async fn app_table(store: &SeaOrmStore) {
    let sql = "CREATE TABLE IF NOT EXISTS app_invoices (id VARCHAR(64) PRIMARY KEY, amount BIGINT NOT NULL)";
    store.connection().execute_unprepared(sql).await.expect("app table");
}

async fn invoice_count(store: &SeaOrmStore, id: &str) -> i64 {
    let db = store.connection();
    let backend = db.get_database_backend();
    let sql = format!("SELECT COUNT(*) AS n FROM app_invoices WHERE id = '{id}'");
    let row = db.query_one_raw(Statement::from_string(backend, sql)).await.expect("count").expect("a row");
    row.try_get::<i64>("", "n").expect("n")
}

/// Seed 000's write path inside the application's transaction: evidence,
/// a request transition and the domain row commit or roll back together.
#[tokio::test]
async fn caller_transaction_commits_or_rolls_back_everything() {
    for (name, store, _dir) in stores().await {
        app_table(&store).await;
        for commit in [false, true] {
            let ws = workspace();
            let spec = NewRequest::new(ws.clone(), TargetRef::new("invoice", "i-1"), "create", Actor::user("u"));
            let creation = lifecycle::create(spec, RequestId::new(), Timestamp::now()).expect("valid");
            let approve =
                lifecycle::apply(creation.request(), &Actor::user("u").into(), &Action::Approve, Timestamp::now())
                    .expect("allowed");
            let evidence = Evidence::decision(ws.clone(), Actor::user("u"), "invoice", "create", Decision::Approved);
            let record = HistoryRecord::new(evidence, Timestamp::now()).expect("valid");
            let invoice = uuid::Uuid::now_v7().simple().to_string();

            let txn = store.begin().await.expect("begin");
            store.append_history_in(&txn, std::slice::from_ref(&record)).await.expect("evidence");
            // A refused statement inside the transaction (same id, other
            // content) must not poison it: the savepoint takes the failure.
            let mut clash = record.evidence().clone();
            clash.reason = Some("different".into());
            let clash = HistoryRecord::with_id(record.id(), clash, Timestamp::now()).expect("valid");
            let refused = store.append_history_in(&txn, &[clash]).await;
            assert!(matches!(refused, Err(GovernanceError::AlreadyExists { .. })), "{name}: {refused:?}");
            store.create_request_in(&txn, &creation).await.expect("create");
            store.commit_transition_in(&txn, &approve).await.expect("approve");
            // A refused write inside the transaction leaves it usable.
            let stale = store.commit_transition_in(&txn, &approve).await;
            assert!(matches!(stale, Err(GovernanceError::Conflict { .. })), "{name}: {stale:?}");
            let insert = format!("INSERT INTO app_invoices (id, amount) VALUES ('{invoice}', 100)");
            txn.execute_unprepared(&insert).await.expect("domain write");
            if commit {
                txn.commit().await.expect("commit");
            } else {
                txn.rollback().await.expect("rollback");
            }

            let request = store.get_request(&ws, creation.request().id()).await;
            let stored_record = store.get_history_record(&ws, record.id()).await;
            let invoices = invoice_count(&store, &invoice).await;
            if commit {
                assert_eq!(request.expect("request stored").revision(), 2, "{name}");
                assert_eq!(stored_record.expect("evidence stored"), record, "{name}");
                assert_eq!(invoices, 1, "{name}");
            } else {
                assert!(request.is_err_and(|e| e.is_not_found()), "{name}: the request rolled back");
                assert!(stored_record.is_err_and(|e| e.is_not_found()), "{name}: the evidence rolled back");
                assert_eq!(invoices, 0, "{name}: the domain row rolled back");
            }
        }
    }
}

/// Migrations are re-runnable, and two stores migrating one fresh database
/// at once both succeed.
#[tokio::test]
async fn migrations_rerun_and_race_safely() {
    for (name, store, _dir) in stores().await {
        store.migrate().await.unwrap_or_else(|e| panic!("{name}: second run: {e}"));
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = format!("sqlite://{}?mode=rwc", dir.path().join("race.db").display());
    let mut urls = vec![(file, DbBackend::Sqlite)];
    for (server, backend) in [(Server::Postgres, DbBackend::Postgres), (Server::MySql, DbBackend::MySql)] {
        match server_url(server).await {
            Ok(url) => urls.push((fresh_database(&url, server).await.expect("fresh database"), backend)),
            Err(error) if setup_fails(&error) => panic!("{}: {error}", server.variable()),
            Err(error) => eprintln!("SKIPPED {backend:?}: {error}"),
        }
    }
    for (url, backend) in urls {
        let (a, b) = (SeaOrmStore::connect(&url).await.expect("a"), SeaOrmStore::connect(&url).await.expect("b"));
        let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
        assert!(ra.is_ok() && rb.is_ok(), "{backend:?}: concurrent first runs: {ra:?} {rb:?}");
    }
}

/// SQLite: `INSERT OR REPLACE` cannot rewrite a history row behind the triggers.
#[tokio::test]
async fn sqlite_replace_cannot_rewrite_history() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SeaOrmStore::open_sqlite(dir.path().join("replace.db")).await.expect("opens");
    let ws = workspace();
    let record = HistoryRecord::new(
        Evidence::decision(ws.clone(), Actor::user("u"), "o", "op", Decision::Denied),
        Timestamp::now(),
    )
    .expect("valid");
    store.append_history(std::slice::from_ref(&record)).await.expect("append");
    let sql = "INSERT OR REPLACE INTO governance_history SELECT * FROM governance_history WHERE id = ?";
    let replace = Statement::from_sql_and_values(DbBackend::Sqlite, sql, [record.id().as_uuid().into()]);
    let outcome = store.connection().execute_raw(replace).await;
    assert!(outcome.is_err_and(|e| e.to_string().contains("append-only")), "REPLACE must hit the guard");
    assert_eq!(store.get_history_record(&ws, record.id()).await.expect("kept"), record);
}

/// An in-memory database is one database, whichever task asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_sqlite_is_one_database() {
    let store = Arc::new(SeaOrmStore::open_sqlite_in_memory().await.expect("opens"));
    let service = GovernanceService::new(store.clone());
    let ws = workspace();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..8 {
        let (service, ws) = (service.clone(), ws.clone());
        tasks.spawn(async move {
            let spec = NewRequest::new(ws, TargetRef::new("t", format!("s{n}")), "op", Actor::user("u"));
            service.create(spec).await.map(|s| s.into_inner().id())
        });
    }
    let mut ids = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        ids.push(joined.expect("task").expect("created"));
    }
    for id in ids {
        store.get_request(&ws, id).await.expect("every task's request is visible to every other");
    }
}

/// Concurrent writers on a SQLite file wait for the write lock instead of
/// failing with "database is locked".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_takes_concurrent_writers() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Arc::new(SeaOrmStore::open_sqlite(dir.path().join("busy.db")).await.expect("opens"));
    let ws = workspace();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (store, ws) = (store.clone(), ws.clone());
        tasks.spawn(async move {
            for _ in 0..25 {
                let e = Evidence::decision(ws.clone(), Actor::user("u"), "o", "op", Decision::Denied);
                store.append_history(&[HistoryRecord::new(e, Timestamp::now())?]).await?;
                let spec = NewRequest::new(ws.clone(), TargetRef::new("t", "s"), "op", Actor::user("u"));
                let creation = lifecycle::create(spec, RequestId::new(), Timestamp::now())?;
                store.create_request(&creation).await?;
            }
            Ok::<_, GovernanceError>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("task").expect("no writer failed");
    }
}

/// Appends `n` decision records to `ws` and returns them in log order.
async fn decisions(store: &SeaOrmStore, ws: &WorkspaceId, n: usize) -> Vec<HistoryRecord> {
    let mut records = Vec::new();
    for _ in 0..n {
        let evidence = Evidence::decision(ws.clone(), Actor::user("u"), "o", "op", Decision::Approved);
        records.push(HistoryRecord::new(evidence, Timestamp::now()).expect("valid"));
    }
    store.append_history(&records).await.expect("append");
    records.sort_by_key(Position::of_record);
    records
}

fn sealed(entries: &[SealEntry], records: &[HistoryRecord]) -> Vec<SealedRecord> {
    entries.iter().cloned().zip(records.iter().cloned().map(|r| Some(Ok(r)))).collect()
}

/// Records as an integrity read returns readable rows.
fn readable(records: &[HistoryRecord]) -> Vec<ReadRecord> {
    records.iter().cloned().map(Ok).collect()
}

fn is_taken(result: &Result<(), GovernanceError>, expected: EntityKind) -> bool {
    matches!(result, Err(GovernanceError::AlreadyExists { kind, .. }) if *kind == expected)
}

/// Raw SQL with `?` placeholders (numbered on PostgreSQL).
async fn raw(db: &impl ConnectionTrait, sql: &str, values: Vec<Value>) -> Result<ExecResult, DbErr> {
    let backend = db.get_database_backend();
    let mut n = 0;
    let sql: String = sql
        .chars()
        .map(|c| match (c, backend) {
            ('?', DbBackend::Postgres) => {
                n += 1;
                format!("${n}")
            }
            _ => c.to_string(),
        })
        .collect();
    db.execute_raw(Statement::from_sql_and_values(backend, sql, values)).await
}

/// Seals records, chains a second checkpoint, reads everything back, and
/// refuses a taken `seq` or an already sealed record without writing anything.
#[tokio::test]
async fn checkpoints_seal_chain_and_read_back() {
    for (name, store, _dir) in stores().await {
        let ws = workspace();
        let first = decisions(&store, &ws, 3).await;
        assert_eq!(store.latest_checkpoint(&ws).await.expect("latest"), None, "{name}");
        assert_eq!(store.unsealed_history(&ws, None, 100).await.expect("unsealed"), readable(&first), "{name}");

        let (one, one_entries) = Checkpoint::seal(None, &ws, &first, Timestamp::now()).expect("seal");
        store.append_checkpoint(&one, &one_entries).await.unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(store.checkpoints(&ws, 0, 10).await.expect("checkpoints"), std::slice::from_ref(&one), "{name}");
        assert_eq!(store.latest_checkpoint(&ws).await.expect("latest").as_ref(), Some(&one), "{name}");
        assert_eq!(store.sealed_records(&ws, 0, 10).await.expect("sealed"), sealed(&one_entries, &first), "{name}");
        assert!(store.unsealed_history(&ws, None, 100).await.expect("unsealed").is_empty(), "{name}");

        // The keyset and the limit of the unsealed scan.
        let second = decisions(&store, &ws, 2).await;
        assert_eq!(store.unsealed_history(&ws, None, 100).await.expect("unsealed"), readable(&second), "{name}");
        assert_eq!(store.unsealed_history(&ws, None, 1).await.expect("unsealed"), readable(&second[..1]), "{name}");
        let after = Some(Position::of_record(&second[0]));
        assert_eq!(store.unsealed_history(&ws, after, 100).await.expect("unsealed"), readable(&second[1..]), "{name}");

        let (two, two_entries) = Checkpoint::seal(Some(&one), &ws, &second, Timestamp::now()).expect("seal");
        assert_eq!((two.seq(), two.first_index(), two.previous()), (2, 3, Some(one.digest())));
        store.append_checkpoint(&two, &two_entries).await.unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let all = [one.clone(), two.clone()];
        assert_eq!(store.checkpoints(&ws, 0, 10).await.expect("checkpoints"), all, "{name}");
        assert_eq!(store.checkpoints(&ws, 0, 1).await.expect("checkpoints"), all[..1], "{name}");
        assert_eq!(store.checkpoints(&ws, 1, 10).await.expect("checkpoints"), all[1..], "{name}");
        assert!(store.checkpoints(&ws, u64::MAX, 10).await.expect("checkpoints").is_empty(), "{name}");
        assert_eq!(store.latest_checkpoint(&ws).await.expect("latest").as_ref(), Some(&two), "{name}");
        assert_eq!(store.sealed_records(&ws, 3, 10).await.expect("sealed"), sealed(&two_entries, &second), "{name}");
        assert_eq!(store.sealed_records(&ws, 0, 2).await.expect("sealed"), sealed(&one_entries[..2], &first), "{name}");
        assert!(store.sealed_records(&ws, u64::MAX, 10).await.expect("sealed").is_empty(), "{name}");

        // Another workspace sees none of it.
        let other = workspace();
        assert!(store.checkpoints(&other, 0, 10).await.expect("checkpoints").is_empty(), "{name}");
        assert_eq!(store.latest_checkpoint(&other).await.expect("latest"), None, "{name}");
        assert!(store.sealed_records(&other, 0, 10).await.expect("sealed").is_empty(), "{name}");
        assert!(store.unsealed_history(&other, None, 10).await.expect("unsealed").is_empty(), "{name}");

        // A taken seq, resent or as a rival seal of other records: nothing written.
        let third = decisions(&store, &ws, 1).await;
        let again = store.append_checkpoint(&two, &two_entries).await;
        assert!(is_taken(&again, EntityKind::Checkpoint), "{name}: {again:?}");
        let (rival, rival_entries) = Checkpoint::seal(Some(&one), &ws, &third, Timestamp::now()).expect("seal");
        let rival = store.append_checkpoint(&rival, &rival_entries).await;
        assert!(
            matches!(&rival, Err(GovernanceError::AlreadyExists { kind: EntityKind::Checkpoint, id, .. }) if id == "2"),
            "{name}: {rival:?}"
        );
        // A record sealed already: refused as a whole.
        let resealed = [third[0].clone(), first[1].clone()];
        let (three, three_entries) = Checkpoint::seal(Some(&two), &ws, &resealed, Timestamp::now()).expect("seal");
        let refused = store.append_checkpoint(&three, &three_entries).await;
        assert!(
            matches!(&refused, Err(GovernanceError::AlreadyExists { kind: EntityKind::HistoryRecord, id, .. })
                if *id == first[1].id().to_string()),
            "{name}: {refused:?}"
        );
        // The same record twice in one checkpoint.
        let twice = [third[0].clone(), third[0].clone()];
        let (three, three_entries) = Checkpoint::seal(Some(&two), &ws, &twice, Timestamp::now()).expect("seal");
        let refused = store.append_checkpoint(&three, &three_entries).await;
        assert!(is_taken(&refused, EntityKind::HistoryRecord), "{name}: {refused:?}");
        assert_eq!(store.checkpoints(&ws, 0, 10).await.expect("checkpoints"), all, "{name}: nothing written");
        assert_eq!(store.sealed_records(&ws, 0, 100).await.expect("sealed").len(), 5, "{name}: nothing written");
        assert_eq!(store.unsealed_history(&ws, None, 100).await.expect("unsealed"), readable(&third), "{name}");

        let (three, three_entries) = Checkpoint::seal(Some(&two), &ws, &third, Timestamp::now()).expect("seal");
        store.append_checkpoint(&three, &three_entries).await.unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(store.latest_checkpoint(&ws).await.expect("latest"), Some(three), "{name}");
    }
}

/// Two sealers at the same `seq`: one wins, the other is told the seq is
/// taken, and only the winner's entries are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sealers_one_wins() {
    for (name, store, _dir) in stores().await {
        for _ in 0..5 {
            let ws = workspace();
            let records = decisions(&store, &ws, 2).await;
            let (a, a_entries) = Checkpoint::seal(None, &ws, &records[..1], Timestamp::now()).expect("seal");
            let (b, b_entries) = Checkpoint::seal(None, &ws, &records[1..], Timestamp::now()).expect("seal");
            let (sa, sb) = (store.clone(), store.clone());
            let (ra, rb) = tokio::join!(
                tokio::spawn(async move { sa.append_checkpoint(&a, &a_entries).await }),
                tokio::spawn(async move { sb.append_checkpoint(&b, &b_entries).await }),
            );
            let (ra, rb) = (ra.expect("task"), rb.expect("task"));
            let (winner, loser) = match (&ra, &rb) {
                (Ok(()), _) => (0, 1),
                (_, Ok(())) => (1, 0),
                _ => panic!("{name}: neither sealer won: {ra:?} {rb:?}"),
            };
            let lost = if winner == 0 { &rb } else { &ra };
            assert!(is_taken(lost, EntityKind::Checkpoint), "{name}: {lost:?}");
            let stored = store.sealed_records(&ws, 0, 10).await.expect("sealed");
            assert_eq!(stored.len(), 1, "{name}");
            assert_eq!(stored[0].1, Some(Ok(records[winner].clone())), "{name}");
            let unsealed = store.unsealed_history(&ws, None, 10).await.expect("unsealed");
            assert_eq!(unsealed, readable(&records[loser..=loser]), "{name}");
        }
    }
}

/// A sealer whose checkpoint row collides with another's uncommitted one
/// waits for it: taken when it commits, free when it rolls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealer_waits_for_an_uncommitted_rival() {
    for (name, store, _dir) in stores().await {
        for commit in [true, false] {
            let ws = workspace();
            let records = decisions(&store, &ws, 1).await;
            let (checkpoint, entries) = Checkpoint::seal(None, &ws, &records, Timestamp::now()).expect("seal");
            let rival = store.begin().await.expect("begin");
            let insert = "INSERT INTO governance_checkpoints \
                (workspace_id, seq, first_index, record_count, root, previous, created_at, digest) \
                VALUES (?, 1, 0, 1, ?, NULL, ?, ?)";
            // The rival's checkpoint is the same, valid one: a sealer that
            // reads it (SQLite, after waiting) must find it taken, not forged.
            let at = checkpoint.created_at().as_datetime().naive_utc();
            let values = vec![ws.as_str().into(), checkpoint.root().into(), at.into(), checkpoint.digest().into()];
            raw(&rival, insert, values).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            let sealer = store.clone();
            let (c, e) = (checkpoint.clone(), entries.clone());
            let task = tokio::spawn(async move { sealer.append_checkpoint(&c, &e).await });
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            assert!(!task.is_finished(), "{name}: the sealer must wait for the rival");
            if commit {
                rival.commit().await.expect("commit");
            } else {
                rival.rollback().await.expect("rollback");
            }
            let outcome = task.await.expect("task");
            let sealed_now = store.sealed_records(&ws, 0, 10).await.expect("sealed");
            if commit {
                assert!(is_taken(&outcome, EntityKind::Checkpoint), "{name}: {outcome:?}");
                assert!(sealed_now.is_empty(), "{name}: nothing written");
            } else {
                outcome.unwrap_or_else(|e| panic!("{name}: {e:?}"));
                assert_eq!(sealed_now, sealed(&entries, &records), "{name}");
            }
        }
    }
}

/// The database itself refuses to rewrite or remove checkpoints and seals.
#[tokio::test]
async fn integrity_tables_refuse_rewrites() {
    for (name, store, _dir) in stores().await {
        let ws = workspace();
        let records = decisions(&store, &ws, 2).await;
        let (checkpoint, entries) = Checkpoint::seal(None, &ws, &records, Timestamp::now()).expect("seal");
        store.append_checkpoint(&checkpoint, &entries).await.expect("append");
        let backend = store.connection().get_database_backend();
        let mut statements = vec![
            "UPDATE governance_checkpoints SET root = 'forged' WHERE workspace_id = ?",
            "DELETE FROM governance_checkpoints WHERE workspace_id = ?",
            "UPDATE governance_seals SET content_hash = 'forged' WHERE workspace_id = ?",
            "DELETE FROM governance_seals WHERE workspace_id = ?",
        ];
        if backend == DbBackend::Sqlite {
            statements.extend([
                "INSERT OR REPLACE INTO governance_checkpoints SELECT * FROM governance_checkpoints WHERE workspace_id = ?",
                "INSERT OR REPLACE INTO governance_seals SELECT * FROM governance_seals WHERE workspace_id = ?",
            ]);
        }
        for sql in statements {
            let outcome = raw(store.connection(), sql, vec![ws.as_str().into()]).await;
            assert!(
                outcome.as_ref().is_err_and(|e| e.to_string().contains("append-only")),
                "{name}: {sql}: {outcome:?}"
            );
        }
        if backend != DbBackend::Sqlite {
            for table in ["governance_checkpoints", "governance_seals"] {
                let outcome = raw(store.connection(), &format!("TRUNCATE TABLE {table}"), Vec::new()).await;
                assert!(outcome.is_err(), "{name}: TRUNCATE {table} must be refused");
            }
        }
        assert_eq!(store.latest_checkpoint(&ws).await.expect("latest"), Some(checkpoint), "{name}");
        assert_eq!(store.sealed_records(&ws, 0, 10).await.expect("sealed"), sealed(&entries, &records), "{name}");
    }
}

/// Negative numbers written behind the store come back as typed errors.
#[tokio::test]
async fn negative_stored_numbers_are_errors() {
    for (name, store, _dir) in stores().await {
        let ws = workspace();
        let digest = "0".repeat(64);
        let checkpoint = "INSERT INTO governance_checkpoints \
            (workspace_id, seq, first_index, record_count, root, previous, created_at, digest) \
            VALUES (?, 1, -1, 1, ?, NULL, '2026-01-01 00:00:00', ?)";
        raw(store.connection(), checkpoint, vec![ws.as_str().into(), digest.clone().into(), digest.clone().into()])
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let seal = "INSERT INTO governance_seals (workspace_id, leaf_index, record_id, content_hash, checkpoint_seq) \
            VALUES (?, 0, ?, ?, -1)";
        raw(store.connection(), seal, vec![ws.as_str().into(), uuid::Uuid::now_v7().into(), digest.into()])
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let corrupt = |e: &GovernanceError| matches!(e, GovernanceError::Backend { retryable: false, .. });
        let latest = store.latest_checkpoint(&ws).await;
        assert!(latest.as_ref().is_err_and(corrupt), "{name}: {latest:?}");
        let listed = store.checkpoints(&ws, 0, 10).await;
        assert!(listed.as_ref().is_err_and(corrupt), "{name}: {listed:?}");
        let entries = store.sealed_records(&ws, 0, 10).await;
        assert!(entries.as_ref().is_err_and(corrupt), "{name}: {entries:?}");
    }
}

/// A database migrated by the first release gets the integrity tables from
/// `migrate()`, and keeps its history.
#[tokio::test]
async fn migrate_adds_integrity_tables_to_a_first_release_database() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = format!("sqlite://{}?mode=rwc", dir.path().join("upgrade.db").display());
    let mut urls = vec![file];
    for server in [Server::Postgres, Server::MySql] {
        match server_url(server).await {
            Ok(url) => urls.push(fresh_database(&url, server).await.expect("fresh database")),
            Err(error) if setup_fails(&error) => panic!("{}: {error}", server.variable()),
            Err(_) => {}
        }
    }
    for url in urls {
        let store = SeaOrmStore::connect(&url).await.expect("connects");
        Migrator::up(store.connection(), Some(1)).await.expect("first migration");
        let ws = workspace();
        let records = decisions(&store, &ws, 2).await;
        store.migrate().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        store.migrate().await.unwrap_or_else(|e| panic!("{url}: re-run: {e}"));
        assert_eq!(store.unsealed_history(&ws, None, 10).await.expect("unsealed"), readable(&records), "{url}");
        let (checkpoint, entries) = Checkpoint::seal(None, &ws, &records, Timestamp::now()).expect("seal");
        store.append_checkpoint(&checkpoint, &entries).await.unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(store.latest_checkpoint(&ws).await.expect("latest"), Some(checkpoint), "{url}");
    }
}

/// The request columns a transition never writes: every column but
/// [`TRANSITION_COLUMNS`].
fn frozen_columns() -> Vec<request::Column> {
    request::Column::iter().filter(|column| !TRANSITION_COLUMNS.contains(&column.as_str())).collect()
}

/// The stored row of a request, as the database holds it.
async fn request_row(store: &SeaOrmStore, ws: &WorkspaceId, id: RequestId) -> request::Model {
    request::Entity::find_by_id((ws.as_str().to_owned(), id.as_uuid()))
        .one(store.connection())
        .await
        .expect("reads")
        .expect("stored")
}

/// Where the backend can tell which columns an UPDATE names (SQLite and
/// PostgreSQL `BEFORE UPDATE OF`), a trigger that refuses any UPDATE naming a
/// frozen column, even with its old value. MySQL has no `UPDATE OF`: there
/// the stored values alone are compared.
async fn refuse_frozen_writes(store: &SeaOrmStore) {
    let columns = frozen_columns().iter().map(|column| column.as_str()).collect::<Vec<_>>().join(", ");
    let statements = match store.connection().get_database_backend() {
        DbBackend::Sqlite => vec![format!(
            "CREATE TRIGGER test_frozen_columns BEFORE UPDATE OF {columns} ON governance_requests \
             BEGIN SELECT RAISE(ABORT, 'a transition wrote a frozen column'); END"
        )],
        DbBackend::Postgres => vec![
            "CREATE FUNCTION test_frozen_columns() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN RAISE EXCEPTION 'a transition wrote a frozen column'; END $$"
                .to_owned(),
            format!(
                "CREATE TRIGGER test_frozen_columns BEFORE UPDATE OF {columns} ON governance_requests \
                 FOR EACH ROW EXECUTE FUNCTION test_frozen_columns()"
            ),
        ],
        _ => Vec::new(),
    };
    for sql in statements {
        store.connection().execute_unprepared(&sql).await.expect("test trigger");
    }
}

async fn created(store: &SeaOrmStore, spec: NewRequest) -> Creation {
    let creation = lifecycle::create(spec, RequestId::new(), Timestamp::now()).expect("valid");
    store.create_request(&creation).await.expect("create");
    creation
}

fn user(id: &str) -> Principal {
    Actor::user(id).into()
}

/// A transition writes exactly the transition columns, with the new state's
/// values: everything fixed at creation keeps its stored value (and on
/// SQLite and PostgreSQL is never even named by the UPDATE), and every
/// revision stores the lifecycle's state digest.
#[tokio::test]
async fn transitions_write_only_the_transition_columns() {
    for (name, store, _dir) in stores().await {
        refuse_frozen_writes(&store).await;
        let ws = workspace();
        let target = TargetRef::new("flag", "checkout");
        let expires = Timestamp::now().add_micros(3_600_000_000).expect("in range");
        let spec = NewRequest::new(ws.clone(), target.clone(), "enable", Actor::user("dev"))
            .intent("roll out the new checkout")
            .approval(Actor::user("lead"), 1)
            .expected_version(7, StaleStrategy::RequireRenewedApproval)
            .expires_at(expires)
            .idempotency_key("frozen-1")
            .category("release")
            .tag("beta")
            .tag("web")
            .metadata(serde_json::json!({ "ticket": 42 }));
        let creation = created(&store, spec).await;
        let id = creation.request().id();
        let first = request_row(&store, &ws, id).await;
        assert_eq!(first.state_digest.as_deref(), Some(creation.request().state_digest()), "{name}");

        let (dev, lead) = (user("dev"), user("lead"));
        let steps = [
            (&dev, Action::Submit { reason: PendingReason::Approval }),
            (&lead, Action::Decide { verdict: Verdict::Approved, comment: Some("fine".into()) }),
            (&dev, Action::Annotate { metadata: serde_json::json!({ "ticket": 43 }) }),
            // Stale: back to pending approval, against the new version.
            (&dev, Action::Execute { current_version: Some(8) }),
        ];
        let mut current = creation.request().clone();
        for (by, action) in &steps {
            let transition = lifecycle::apply(&current, by, action, Timestamp::now()).expect("allowed");
            store.commit_transition(&transition).await.unwrap_or_else(|e| panic!("{name}: {action:?}: {e}"));
            let row = request_row(&store, &ws, id).await;
            for column in frozen_columns() {
                assert_eq!(row.get(column), first.get(column), "{name}: {action:?} changed {}", column.as_str());
            }
            assert_eq!(row.state_digest.as_deref(), Some(transition.request().state_digest()), "{name}: {action:?}");
            let stored = store.get_request(&ws, id).await.expect("reads");
            assert_eq!(&stored, transition.request(), "{name}: {action:?}");
            // Decoded, the row still matches its stored digest.
            stored.check().unwrap_or_else(|e| panic!("{name}: {action:?}: {e}"));
            current = stored;
        }
        assert_eq!(current.status(), RequestStatus::Pending, "{name}");
        assert_eq!(current.expected_state_version(), Some(8), "{name}");

        let newer = created(&store, NewRequest::new(ws.clone(), target, "disable", Actor::user("dev"))).await;
        let supersede = lifecycle::supersede(&current, newer.request(), &dev, Timestamp::now()).expect("allowed");
        store.commit_transition(&supersede).await.unwrap_or_else(|e| panic!("{name}: supersede: {e}"));
        let row = request_row(&store, &ws, id).await;
        for column in frozen_columns() {
            assert_eq!(row.get(column), first.get(column), "{name}: supersede changed {}", column.as_str());
        }
        assert_eq!(row.superseded_by, Some(newer.request().id().as_uuid()), "{name}");
        assert_eq!(row.state_digest.as_deref(), Some(supersede.request().state_digest()), "{name}");
        assert_eq!(&store.get_request(&ws, id).await.expect("reads"), supersede.request(), "{name}");
    }
}

/// A row written before state digests were stored (the column is NULL)
/// reads with a digest computed from the row, and its next transition
/// commits and stores one.
#[tokio::test]
async fn a_row_without_a_state_digest_still_transitions() {
    for (name, store, _dir) in stores().await {
        let ws = workspace();
        let spec = NewRequest::new(ws.clone(), TargetRef::new("flag", "f"), "enable", Actor::user("dev"))
            .metadata(serde_json::json!({ "b": [1, 2.5], "a": "x" }));
        let creation = created(&store, spec).await;
        let id = creation.request().id();
        let sql = "UPDATE governance_requests SET state_digest = NULL WHERE workspace_id = ? AND id = ?";
        raw(store.connection(), sql, vec![ws.as_str().into(), id.as_uuid().into()]).await.expect("legacy row");
        assert_eq!(request_row(&store, &ws, id).await.state_digest, None, "{name}");

        let legacy = store.get_request(&ws, id).await.expect("reads");
        assert_eq!(legacy.state_digest(), creation.request().state_digest(), "{name}: computed from the row");
        let approve = lifecycle::apply(&legacy, &user("dev"), &Action::Approve, Timestamp::now()).expect("allowed");
        store.commit_transition(&approve).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let row = request_row(&store, &ws, id).await;
        assert_eq!(row.state_digest.as_deref(), Some(approve.request().state_digest()), "{name}");
        // A second commit of the same transition meets the stored digest: stale.
        let again = store.commit_transition(&approve).await;
        assert!(matches!(again, Err(GovernanceError::Conflict { expected: 1, actual: 2, .. })), "{name}: {again:?}");
    }
}

/// A supersession is written only while its successor is stored at the
/// revision it was computed against; otherwise nothing is written.
#[tokio::test]
async fn supersession_checks_its_successor() {
    for (name, store, _dir) in stores().await {
        let ws = workspace();
        let target = TargetRef::new("flag", "f");
        let spec = || NewRequest::new(ws.clone(), target.clone(), "enable", Actor::user("dev"));
        let dev = user("dev");
        let older = created(&store, spec()).await;
        let newer = created(&store, spec()).await;
        let supersede = lifecycle::supersede(older.request(), newer.request(), &dev, Timestamp::now()).expect("ok");

        // The successor moved on: a conflict on the successor.
        let annotate = Action::Annotate { metadata: serde_json::json!({ "moved": true }) };
        let moved = lifecycle::apply(newer.request(), &dev, &annotate, Timestamp::now()).expect("allowed");
        store.commit_transition(&moved).await.expect("successor moves on");
        let refused = store.commit_transition(&supersede).await;
        let successor = newer.request().id();
        assert!(
            matches!(refused, Err(GovernanceError::Conflict { id, expected: 1, actual: 2 }) if id == successor),
            "{name}: {refused:?}"
        );
        assert_eq!(&store.get_request(&ws, older.request().id()).await.expect("reads"), older.request(), "{name}");
        let history = store.history_for_request(&ws, older.request().id()).await.expect("history");
        assert_eq!(history.len(), 1, "{name}: no record written");

        // A successor that was never stored.
        let ghost = lifecycle::create(spec(), RequestId::new(), Timestamp::now()).expect("valid");
        let supersede = lifecycle::supersede(older.request(), ghost.request(), &dev, Timestamp::now()).expect("ok");
        let refused = store.commit_transition(&supersede).await;
        assert!(
            matches!(&refused, Err(GovernanceError::NotFound { kind: EntityKind::Request, id, .. })
                if *id == ghost.request().id().to_string()),
            "{name}: {refused:?}"
        );

        // Both moved on: the older request's own conflict comes first.
        let supersede = lifecycle::supersede(older.request(), newer.request(), &dev, Timestamp::now()).expect("ok");
        let approve = lifecycle::apply(older.request(), &dev, &Action::Approve, Timestamp::now()).expect("allowed");
        store.commit_transition(&approve).await.expect("older moves on");
        let refused = store.commit_transition(&supersede).await;
        let older_id = older.request().id();
        assert!(
            matches!(refused, Err(GovernanceError::Conflict { id, expected: 1, actual: 2 }) if id == older_id),
            "{name}: {refused:?}"
        );
    }
}

/// The successor check takes a lock: a supersession whose successor has an
/// uncommitted write waits for it, then sees the outcome (PostgreSQL
/// `FOR SHARE` reads the latest committed row; on MySQL the write of the
/// successor's `successor_guard` waits for the row lock, and the locking
/// read after it sees the latest committed row; SQLite waits for the write
/// lock). A plain read would go ahead on the old
/// successor state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supersession_waits_for_a_write_of_its_successor() {
    for (name, store, _dir) in stores().await {
        for commit in [true, false] {
            let ws = workspace();
            let target = TargetRef::new("flag", "f");
            let dev = user("dev");
            let older = created(&store, NewRequest::new(ws.clone(), target.clone(), "a", Actor::user("dev"))).await;
            let newer = created(&store, NewRequest::new(ws.clone(), target, "b", Actor::user("dev"))).await;
            let supersede =
                lifecycle::supersede(older.request(), newer.request(), &dev, Timestamp::now()).expect("allowed");
            let annotate = Action::Annotate { metadata: serde_json::json!({ "rival": true }) };
            let rival_write = lifecycle::apply(newer.request(), &dev, &annotate, Timestamp::now()).expect("allowed");

            let rival = store.begin().await.expect("begin");
            store.commit_transition_in(&rival, &rival_write).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            let superseder = store.clone();
            let task = tokio::spawn(async move { superseder.commit_transition(&supersede).await });
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            assert!(!task.is_finished(), "{name}: the supersession must wait for the successor's writer");
            if commit {
                rival.commit().await.expect("commit");
            } else {
                rival.rollback().await.expect("rollback");
            }
            let outcome = task.await.expect("task");
            let stored = store.get_request(&ws, older.request().id()).await.expect("reads");
            let successor = newer.request().id();
            if commit {
                assert!(
                    matches!(outcome, Err(GovernanceError::Conflict { id, expected: 1, actual: 2 }) if id == successor),
                    "{name}: {outcome:?}"
                );
                assert_eq!(&stored, older.request(), "{name}: nothing written");
            } else {
                outcome.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(stored.superseded_by(), Some(successor), "{name}");
            }
        }
    }
}

/// Integrity reads report a history row that does not decode (an unknown
/// category, an actor that is not a principal; on SQLite, text that is not
/// JSON) as `Unreadable` in its place; other reads still fail on it.
#[tokio::test]
async fn integrity_reads_report_unreadable_rows() {
    for (name, store, _dir) in stores().await {
        let ws = workspace();
        let good = decisions(&store, &ws, 1).await.remove(0);
        let template = history::Entity::find_by_id((ws.as_str().to_owned(), good.id().as_uuid()))
            .one(store.connection())
            .await
            .expect("reads")
            .expect("stored");
        let mut bad: Vec<(RecordId, Timestamp)> = Vec::new();
        let forgeries: [fn(&mut history::Model); 2] =
            [|row| row.category = "bogus".into(), |row| row.actor = serde_json::json!({ "not": "a principal" })];
        for (n, forge) in forgeries.iter().enumerate() {
            let mut row = template.clone();
            row.id = uuid::Uuid::now_v7();
            row.created_at.0 += chrono_micros(n as i64 + 1);
            forge(&mut row);
            bad.push((RecordId::from_uuid(row.id), Timestamp::from_datetime(row.created_at.0)));
            // Bound as the backend stores each column (PostgreSQL: text[]).
            let backend = store.connection().get_database_backend();
            let insert = insert_statement(backend, &[row]).expect("a statement").expect("one row");
            store.connection().execute_raw(insert).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        if store.connection().get_database_backend() == DbBackend::Sqlite {
            let id = uuid::Uuid::now_v7();
            let at = template.created_at.0 + chrono_micros(3);
            let sql = "INSERT INTO governance_history (workspace_id, id, category, code, actor_kind, actor_id, actor, \
                object_type, operation, reason_codes, created_at, content_hash) \
                VALUES (?, ?, 'decision', 'decision.approved', 'user', 'u', 'not json', 'o', 'op', '[]', ?, ?)";
            let values = vec![ws.as_str().into(), id.into(), at.naive_utc().into(), good.content_hash().into()];
            raw(store.connection(), sql, values).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            bad.push((RecordId::from_uuid(id), Timestamp::from_datetime(at)));
        }

        let unsealed = store.unsealed_history(&ws, None, 10).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(unsealed.len(), bad.len() + 1, "{name}: {unsealed:?}");
        assert_eq!(unsealed[0], Ok(good.clone()), "{name}");
        for (read, (id, at)) in unsealed[1..].iter().zip(&bad) {
            let Err(unreadable) = read else { panic!("{name}: {read:?} must be unreadable") };
            assert_eq!((unreadable.id, unreadable.created_at), (*id, *at), "{name}");
            assert!(!unreadable.problem.is_empty(), "{name}: the problem is named");
        }
        // The keyset pages past an unreadable row.
        let after = Position { created_at: bad[0].1, id: bad[0].0.as_uuid() };
        let rest = store.unsealed_history(&ws, Some(after), 10).await.expect("unsealed");
        assert_eq!(rest.len(), bad.len() - 1, "{name}");

        // Sealed (as a sealer that wrote its entry before the row changed would have).
        let (id, at) = bad[0];
        let entry = seal::Model {
            workspace_id: ws.as_str().to_owned(),
            leaf_index: 0,
            record_id: id.as_uuid(),
            content_hash: good.content_hash().to_owned(),
            checkpoint_seq: 1,
        };
        seal::Entity::insert(entry.into_active_model().reset_all())
            .exec_without_returning(store.connection())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let sealed = store.sealed_records(&ws, 0, 10).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(sealed.len(), 1, "{name}");
        assert!(
            matches!(&sealed[0].1, Some(Err(Unreadable { id: i, created_at, .. })) if *i == id && *created_at == at),
            "{name}: {sealed:?}"
        );

        // Every other read still refuses the row.
        let read = store.get_history_record(&ws, id).await;
        assert!(matches!(read, Err(GovernanceError::Backend { retryable: false, .. })), "{name}: {read:?}");
    }
}

fn chrono_micros(n: i64) -> chrono::TimeDelta {
    chrono::TimeDelta::microseconds(n)
}

/// Counting refuses a time window outside the storable range before it queries.
#[tokio::test]
async fn count_history_validates_its_window() {
    for (name, store, _dir) in stores().await {
        let before_epoch = Timestamp::from_unix_micros(-1).expect("representable");
        let query = CountQuery::new(CountBy::Operation, TimeRange { from: Some(before_epoch), until: None });
        let counted = store.count_history(&workspace(), &query).await;
        assert!(matches!(counted, Err(GovernanceError::Validation { .. })), "{name}: {counted:?}");
    }
}

/// A consistent copy of `request` with `edit` applied and its state digest
/// recomputed: what a caller could build from a read (the copy checks).
fn forged(request: &GovernanceRequest, edit: impl FnOnce(&mut serde_json::Value)) -> GovernanceRequest {
    let mut json = serde_json::to_value(request).expect("serializes");
    edit(&mut json);
    let edited: GovernanceRequest = serde_json::from_value(json.clone()).expect("deserializes");
    json["state_digest"] = edited.compute_state_digest().expect("a digest").into();
    let forged: GovernanceRequest = serde_json::from_value(json).expect("deserializes");
    forged.check().expect("the forgery is self-consistent");
    assert_ne!(forged.state_digest(), request.state_digest());
    forged
}

/// Sets a request's stored digest to NULL, as on a row written before digests.
async fn forget_digest(store: &SeaOrmStore, ws: &WorkspaceId, id: RequestId) {
    let sql = "UPDATE governance_requests SET state_digest = NULL WHERE workspace_id = ? AND id = ?";
    raw(store.connection(), sql, vec![ws.as_str().into(), id.as_uuid().into()]).await.expect("legacy row");
}

/// A row stored without a digest is checked against the digest of its
/// stored content: a transition computed from a forged copy (approvals
/// dropped, intent changed, digest recomputed) is a validation error and
/// changes nothing; an honest one commits and stores its digest.
#[tokio::test]
async fn forged_copies_of_rows_without_a_digest_are_refused() {
    for (name, store, _dir) in stores().await {
        let ws = workspace();
        let spec = NewRequest::new(ws.clone(), TargetRef::new("flag", "f"), "enable", Actor::user("dev"))
            .intent("as asked")
            .approval(Actor::user("lead"), 1);
        let creation = created(&store, spec).await;
        let id = creation.request().id();
        forget_digest(&store, &ws, id).await;
        let read = store.get_request(&ws, id).await.expect("reads");
        assert_eq!(&read, creation.request(), "{name}");

        let no_approvals = forged(&read, |json| json["approvals"] = serde_json::json!([]));
        let other_intent = forged(&read, |json| json["intent"] = "something else".into());
        let cancel = Action::Cancel { reason: "no".into() };
        for (copy, action) in [(&no_approvals, &Action::Approve), (&other_intent, &cancel)] {
            let transition = lifecycle::apply(copy, &user("dev"), action, Timestamp::now()).expect("the copy allows");
            let refused = store.commit_transition(&transition).await;
            assert!(matches!(refused, Err(GovernanceError::Validation { .. })), "{name}: {action:?}: {refused:?}");
            assert_eq!(&store.get_request(&ws, id).await.expect("reads"), creation.request(), "{name}: unchanged");
            assert_eq!(request_row(&store, &ws, id).await.state_digest, None, "{name}: still without a digest");
            assert_eq!(store.history_for_request(&ws, id).await.expect("history").len(), 1, "{name}");
        }
        // Inside a caller's transaction the refusal leaves it usable.
        let transition = lifecycle::apply(&no_approvals, &user("dev"), &Action::Approve, Timestamp::now()).expect("ok");
        let txn = store.begin().await.expect("begin");
        let refused = store.commit_transition_in(&txn, &transition).await;
        assert!(matches!(refused, Err(GovernanceError::Validation { .. })), "{name}: {refused:?}");
        txn.execute_unprepared("SELECT 1").await.unwrap_or_else(|e| panic!("{name}: the transaction is usable: {e}"));
        txn.rollback().await.expect("rollback");

        let submit = Action::Submit { reason: PendingReason::Approval };
        let honest = lifecycle::apply(&read, &user("dev"), &submit, Timestamp::now()).expect("allowed");
        store.commit_transition(&honest).await.unwrap_or_else(|e| panic!("{name}: honest: {e}"));
        let row = request_row(&store, &ws, id).await;
        assert_eq!(row.state_digest.as_deref(), Some(honest.request().state_digest()), "{name}");
        assert_eq!(&store.get_request(&ws, id).await.expect("reads"), honest.request(), "{name}");

        // An honest one inside a caller's transaction commits with it.
        forget_digest(&store, &ws, id).await;
        let read = store.get_request(&ws, id).await.expect("reads");
        let decide = Action::Decide { verdict: Verdict::Approved, comment: None };
        let approve = lifecycle::apply(&read, &user("lead"), &decide, Timestamp::now()).expect("allowed");
        let txn = store.begin().await.expect("begin");
        store.commit_transition_in(&txn, &approve).await.unwrap_or_else(|e| panic!("{name}: in a transaction: {e}"));
        txn.commit().await.expect("commit");
        let row = request_row(&store, &ws, id).await;
        assert_eq!(row.state_digest.as_deref(), Some(approve.request().state_digest()), "{name}");
    }
}

/// The same for a supersession's successor stored without a digest: a
/// forged copy of it is refused, the honest one accepted (also when the
/// older request has no digest either).
#[tokio::test]
async fn forged_successors_without_a_digest_are_refused() {
    for (name, store, _dir) in stores().await {
        let ws = workspace();
        let spec = || NewRequest::new(ws.clone(), TargetRef::new("flag", "f"), "enable", Actor::user("dev"));
        for older_without_digest in [false, true] {
            let older = created(&store, spec()).await;
            let newer = created(&store, spec().intent("the newer one")).await;
            let (older_id, newer_id) = (older.request().id(), newer.request().id());
            forget_digest(&store, &ws, newer_id).await;
            if older_without_digest {
                forget_digest(&store, &ws, older_id).await;
            }
            let read_newer = store.get_request(&ws, newer_id).await.expect("reads");
            let read_older = store.get_request(&ws, older_id).await.expect("reads");

            let copy = forged(&read_newer, |json| json["intent"] = "another one".into());
            let supersede = lifecycle::supersede(&read_older, &copy, &user("dev"), Timestamp::now()).expect("ok");
            let refused = store.commit_transition(&supersede).await;
            assert!(matches!(refused, Err(GovernanceError::Validation { .. })), "{name}: {refused:?}");
            assert_eq!(&store.get_request(&ws, older_id).await.expect("older"), older.request(), "{name}");
            assert_eq!(store.history_for_request(&ws, older_id).await.expect("history").len(), 1, "{name}");

            let supersede = lifecycle::supersede(&read_older, &read_newer, &user("dev"), Timestamp::now()).expect("ok");
            store.commit_transition(&supersede).await.unwrap_or_else(|e| panic!("{name}: honest successor: {e}"));
            let row = request_row(&store, &ws, older_id).await;
            assert_eq!(row.superseded_by, Some(newer_id.as_uuid()), "{name}");
            assert_eq!(row.state_digest.as_deref(), Some(supersede.request().state_digest()), "{name}");
            assert_eq!(request_row(&store, &ws, newer_id).await.state_digest, None, "{name}: successor not written");
        }
    }
}

/// PostgreSQL: the server refuses a time outside 1970..=9999 in every time
/// column, so no read meets one (the driver's decoder panics on `infinity`).
#[tokio::test]
async fn postgres_refuses_times_outside_the_storable_range() {
    for (name, store, _dir) in stores().await {
        if store.connection().get_database_backend() != DbBackend::Postgres {
            continue;
        }
        let ws = workspace();
        let spec = NewRequest::new(ws.clone(), TargetRef::new("flag", "f"), "enable", Actor::user("dev"))
            .expires_at(Timestamp::now().add_micros(1_000_000).expect("in range"));
        let id = created(&store, spec).await.request().id();
        decisions(&store, &ws, 1).await;
        let db = store.connection();
        let sql = "SELECT COUNT(*) AS n FROM pg_constraint WHERE conname LIKE 'governance_%in_range' AND convalidated";
        let validated = db.query_one_raw(Statement::from_string(DbBackend::Postgres, sql)).await.expect("catalog");
        assert_eq!(validated.expect("a row").try_get::<i64>("", "n").expect("n"), 3, "{name}: validated");
        for (column, value) in [
            ("updated_at", "infinity"),
            ("updated_at", "-infinity"),
            ("created_at", "1969-12-31 23:59:59.999999"),
            ("expires_at", "10000-01-01 00:00:00"),
            ("expires_at", "infinity"),
        ] {
            let sql = format!("UPDATE governance_requests SET {column} = '{value}' WHERE workspace_id = ? AND id = ?");
            let refused = raw(store.connection(), &sql, vec![ws.as_str().into(), id.as_uuid().into()]).await;
            let error = refused.expect_err(&format!("{name}: {column} = {value}"));
            assert!(error.to_string().contains("governance_requests_times_in_range"), "{name}: {error}");
        }
        let sql = "INSERT INTO governance_history (workspace_id, id, category, code, actor_kind, actor_id, actor, \
            object_type, operation, reason_codes, created_at, content_hash) \
            VALUES (?, ?, 'decision', 'decision.approved', 'user', 'u', '{}', 'o', 'op', '{}', 'infinity', 'h')";
        let error = raw(store.connection(), sql, vec![ws.as_str().into(), uuid::Uuid::now_v7().into()])
            .await
            .expect_err("history created_at = infinity");
        assert!(error.to_string().contains("governance_history_time_in_range"), "{name}: {error}");
        let sql = "INSERT INTO governance_checkpoints VALUES (?, 1, 0, 1, 'root', NULL, 'infinity', 'digest')";
        let error = raw(store.connection(), sql, vec![ws.as_str().into()]).await.expect_err("checkpoint");
        assert!(error.to_string().contains("governance_checkpoints_time_in_range"), "{name}: {error}");

        // The edges of the range are stored and read back.
        let sql = "UPDATE governance_requests SET expires_at = '9999-12-31 23:59:59.999999', \
            created_at = '1970-01-01 00:00:00' WHERE workspace_id = ? AND id = ?";
        raw(store.connection(), sql, vec![ws.as_str().into(), id.as_uuid().into()]).await.expect("in range");
        let read = store.get_request(&ws, id).await.expect("reads without a panic");
        assert_eq!(read.expires_at().map(|t| t.unix_micros()), Some(Timestamp::MAX_MICROS), "{name}");
        assert_eq!(read.created_at().unix_micros(), Timestamp::MIN_MICROS, "{name}");
        // The creation record and the decision.
        assert_eq!(store.unsealed_history(&ws, None, 10).await.expect("unsealed").len(), 2, "{name}");
    }
}

/// A position past the storable range is the same validation error on every backend.
#[tokio::test]
async fn unsealed_history_validates_its_position() {
    for (name, store, _dir) in stores().await {
        let ws = workspace();
        decisions(&store, &ws, 1).await;
        let beyond = Timestamp::from_unix_micros(Timestamp::MAX_MICROS + 1).expect("chrono has it");
        let after = Position { created_at: beyond, id: uuid::Uuid::nil() };
        let refused = store.unsealed_history(&ws, Some(after), 10).await;
        assert!(matches!(refused, Err(GovernanceError::Validation { .. })), "{name}: {refused:?}");
    }
}

/// The plans of the store's own statements, on every backend: each query
/// explains, and the counts over a window and the history of a request use
/// their indexes (on tables too small for a plan to be forced, a full scan
/// would show as one).
#[tokio::test]
async fn every_query_explains_and_the_counts_use_the_decision_index() {
    use governance_abstractions::{HistoryFilter, PageRequest, RequestFilter};
    for (name, store, _dir) in stores().await {
        let ws = workspace();
        let records: Vec<HistoryRecord> = (0..40)
            .map(|n| {
                let decision = if n % 3 == 0 { Decision::Denied } else { Decision::Approved };
                let e = Evidence::decision(ws.clone(), Actor::user("u"), "invoice", "update", decision)
                    .reason_codes(["limit"]);
                HistoryRecord::new(e, Timestamp::now()).expect("valid")
            })
            .collect();
        store.append_history(&records).await.expect("append");
        let week = TimeRange { from: Timestamp::now().add_micros(-7 * 86_400_000_000), until: None };
        let pending = RequestFilter { statuses: vec![RequestStatus::Pending], ..RequestFilter::default() };
        let denied = HistoryFilter { decision: Some(Decision::Denied), ..HistoryFilter::default() };
        let plans = [
            store.explain_query_requests(&ws, &pending, &PageRequest::first(50)).await,
            store.explain_history_for_request(&ws, RequestId::new()).await,
            store.explain_query_history(&ws, &denied, &PageRequest::first(50)).await,
        ];
        for plan in plans {
            assert!(!plan.expect("explains").is_empty(), "{name}");
        }
        for by in [CountBy::ReasonCode, CountBy::Principal, CountBy::Operation, CountBy::Decision] {
            let query = CountQuery::new(by, week).decision(Decision::Denied);
            let plan = store.explain_count_history(&ws, &query).await.expect("explains").join("\n");
            assert!(plan.contains("governance_history_decision"), "{name} {by:?}: {plan}");
            let counted = store.count_history(&ws, &query).await.expect("counts");
            assert_eq!(counted.iter().map(|c| c.count).max(), Some(14), "{name} {by:?}: {counted:?}");
        }
    }
}

/// PostgreSQL: a creation and a transition (a supersession too) are one
/// statement each, with no transaction around them; a lost race costs the
/// statement and one light read, and is reported as a conflict.
#[tokio::test]
async fn postgres_writes_are_one_statement_each() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let Some(url) = governance_test_support::fresh_database_or_skip(Server::Postgres).await else { return };
    let mut db = governance_seaorm::sea_orm::Database::connect(url.as_str()).await.expect("connects");
    let statements = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&statements);
    db.set_metric_callback(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let store = SeaOrmStore::new(db);
    store.migrate().await.expect("migrates");
    let sent = |what: &str, expected: usize| {
        assert_eq!(statements.swap(0, Ordering::SeqCst), expected, "{what}");
    };
    let ws = workspace();
    statements.store(0, Ordering::SeqCst);
    let spec = NewRequest::new(ws.clone(), TargetRef::new("flag", "f"), "enable", Actor::user("dev"));
    let older = created(&store, spec.clone()).await;
    sent("a creation", 1);
    let submit = lifecycle::apply(older.request(), &user("dev"), &Action::Approve, Timestamp::now()).expect("allowed");
    store.commit_transition(&submit).await.expect("approves");
    sent("a transition", 1);
    let annotate = lifecycle::apply(
        older.request(),
        &user("dev"),
        &Action::Annotate { metadata: serde_json::json!({"n": 1}) },
        Timestamp::now(),
    )
    .expect("allowed");
    let lost = store.commit_transition(&annotate).await.expect_err("computed from the old revision");
    assert!(matches!(lost, GovernanceError::Conflict { .. }), "{lost:?}");
    sent("a lost race: the statement and one read", 2);
    let newer = created(&store, spec).await;
    sent("a second creation", 1);
    let supersede = lifecycle::supersede(submit.request(), newer.request(), &user("dev"), Timestamp::now())
        .expect("the newer request supersedes the older");
    store.commit_transition(&supersede).await.expect("supersedes");
    sent("a supersession", 1);
    let stored = store.get_request(&ws, older.request().id()).await.expect("stored");
    assert_eq!(stored.status(), RequestStatus::Superseded);
    assert_eq!(stored, *supersede.request());
}

/// MySQL/MariaDB and SQLite: a lost race rolls its write transaction back
/// as soon as its update matched nothing and only then reads why, without a
/// lock: under `REPEATABLE READ` (and SQLite's write lock) a read inside
/// would keep the next winner queued behind it.
#[tokio::test]
async fn a_lost_race_reads_why_after_its_rollback() {
    use std::sync::Mutex;
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut urls = vec![format!("sqlite://{}?mode=rwc", dir.path().join("g.db").display())];
    urls.extend(governance_test_support::fresh_database_or_skip(Server::MySql).await);
    for url in urls {
        let mut db = governance_seaorm::sea_orm::Database::connect(url.as_str()).await.expect("connects");
        let sent = Arc::new(Mutex::new(Vec::<String>::new()));
        let log = Arc::clone(&sent);
        db.set_metric_callback(move |info| log.lock().expect("log").push(info.statement.sql.clone()));
        let store = SeaOrmStore::new(db);
        store.migrate().await.expect("migrates");
        let backend = store.connection().get_database_backend();
        let ws = workspace();
        let spec = NewRequest::new(ws.clone(), TargetRef::new("flag", "f"), "enable", Actor::user("dev"));
        let older = created(&store, spec).await;
        let approve = lifecycle::apply(older.request(), &user("dev"), &Action::Approve, Timestamp::now()).expect("ok");
        sent.lock().expect("log").clear();
        store.commit_transition(&approve).await.expect("approves");
        let statements = std::mem::take(&mut *sent.lock().expect("log"));
        assert_eq!(statements.len(), 2, "{backend:?}: the update and the insert: {statements:#?}");
        assert!(statements[0].starts_with("UPDATE"), "{backend:?}: {statements:#?}");
        let annotate = Action::Annotate { metadata: serde_json::json!({"n": 1}) };
        let stale = lifecycle::apply(older.request(), &user("dev"), &annotate, Timestamp::now()).expect("ok");
        let lost = store.commit_transition(&stale).await.expect_err("computed from the old revision");
        assert!(matches!(lost, GovernanceError::Conflict { .. }), "{backend:?}: {lost:?}");
        let statements = std::mem::take(&mut *sent.lock().expect("log"));
        assert_eq!(statements.len(), 2, "{backend:?}: the update, then one read: {statements:#?}");
        assert!(statements[0].starts_with("UPDATE"), "{backend:?}: {statements:#?}");
        assert!(
            statements[1].starts_with("SELECT") && !statements[1].contains("FOR UPDATE"),
            "{backend:?}: the read takes no lock: {statements:#?}"
        );
        let stored = store.get_request(&ws, older.request().id()).await.expect("stored");
        assert_eq!(stored, *approve.request(), "{backend:?}: the lost race wrote nothing");
        let history = store.history_for_request(&ws, older.request().id()).await.expect("history");
        assert_eq!(history.len(), 2, "{backend:?}: the creation and the approval");
    }
}

/// MySQL/MariaDB: inside a caller's `REPEATABLE READ` transaction whose
/// snapshot predates the request, a transition that lost its race is a
/// `Conflict` with the stored revision. A read in the caller's snapshot
/// would not see the request at all and report it missing.
#[tokio::test]
async fn a_lost_race_in_a_caller_transaction_reads_the_current_row() {
    let Some(url) = governance_test_support::fresh_database_or_skip(Server::MySql).await else { return };
    let store = SeaOrmStore::connect(&url).await.expect("connects");
    store.migrate().await.expect("migrates");
    let ws = workspace();
    let txn = store.begin().await.expect("begins");
    // The caller's snapshot starts at its first read, before the request exists.
    txn.query_one_raw(Statement::from_string(DbBackend::MySql, "SELECT COUNT(*) FROM governance_requests"))
        .await
        .expect("reads");
    let spec = NewRequest::new(ws.clone(), TargetRef::new("flag", "f"), "enable", Actor::user("dev"));
    let older = created(&store, spec).await;
    let approve = lifecycle::apply(older.request(), &user("dev"), &Action::Approve, Timestamp::now()).expect("ok");
    store.commit_transition(&approve).await.expect("approves outside");
    let annotate = Action::Annotate { metadata: serde_json::json!({"n": 1}) };
    let stale = lifecycle::apply(older.request(), &user("dev"), &annotate, Timestamp::now()).expect("ok");
    let lost = store.commit_transition_in(&txn, &stale).await.expect_err("computed from revision 1");
    assert!(matches!(lost, GovernanceError::Conflict { expected: 1, actual: 2, .. }), "{lost:?}");
    txn.rollback().await.expect("rolls back");
    assert_eq!(store.get_request(&ws, older.request().id()).await.expect("stored"), *approve.request());
}

/// PostgreSQL: once rolled up, a count over whole hours reads the hourly
/// counts of the shared schema (its plan names them); the other backends
/// keep none and refuse a roll-up with a typed reason.
#[tokio::test]
async fn rolled_up_counts_are_read_on_postgres_and_refused_elsewhere() {
    for (name, store, _dir) in stores().await {
        let ws = workspace();
        let week = TimeRange {
            from: Timestamp::now().add_micros(-7 * 86_400_000_000),
            until: Some(Timestamp::now().add_micros(3_600_000_000).expect("in range")),
        };
        let query = CountQuery::new(CountBy::ReasonCode, week).decision(Decision::Denied);
        if store.connection().get_database_backend() != DbBackend::Postgres {
            let refused = store.roll_up_counts(&ws).await.expect_err("no hourly counts here");
            let source = std::error::Error::source(&refused).expect("a source");
            assert!(source.downcast_ref::<governance_seaorm::RollUpUnsupported>().is_some(), "{name}: {refused:?}");
            assert!(!refused.is_retryable(), "{name}");
            continue;
        }
        let records: Vec<HistoryRecord> = (0..30)
            .map(|i| {
                let evidence = Evidence::decision(ws.clone(), Actor::user("u"), "o", "op", Decision::Denied)
                    .reason_codes(vec![if i % 3 == 0 { "risk" } else { "limit" }]);
                let at = Timestamp::now().add_micros(-(i * 3_600_000_000 + 1)).expect("in range");
                HistoryRecord::new(evidence, at).expect("valid")
            })
            .collect();
        store.append_history(&records).await.expect("append");
        let before = store.count_history(&ws, &query).await.expect("count");
        let plan = store.explain_count_history(&ws, &query).await.expect("plan").join("\n");
        assert!(!plan.contains("governance_history_counts"), "{name}: nothing rolled up yet\n{plan}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut folded = 0;
        while folded < 30 {
            folded += store.roll_up_counts(&ws).await.expect("roll up");
            assert!(std::time::Instant::now() < deadline, "{name}: {folded} of 30 folded");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(folded, 30, "{name}");
        let plan = store.explain_count_history(&ws, &query).await.expect("plan").join("\n");
        assert!(plan.contains("governance_history_daily_counts"), "{name}: the daily counts are read\n{plan}");
        let after = store.count_history(&ws, &query).await.expect("count");
        assert_eq!(after, before, "{name}");
        assert_eq!(after.iter().map(|c| c.count).sum::<u64>(), 30, "{name}: {after:?}");
    }
}

/// The library stores only text reason codes, but a role that may insert
/// history can write a row around it with a `NULL` among its codes. Counts
/// by reason code skip that code and still count the record's others, over
/// every kind of window (whole hours, PostgreSQL's hourly counts among
/// them, and a window inside one hour), rather than failing every count of
/// the workspace. A code that is not text at all (a number in SQLite's JSON
/// column) is a typed error, as it is for every reader of that record.
#[tokio::test]
async fn counts_skip_reason_codes_the_library_never_writes() {
    for (name, store, _dir) in stores().await {
        let ws = workspace();
        let backend = store.connection().get_database_backend();
        let now = Timestamp::now();
        let denied = |i: i64, codes: Vec<&str>| {
            let evidence =
                Evidence::decision(ws.clone(), Actor::user("u"), "o", "op", Decision::Denied).reason_codes(codes);
            HistoryRecord::new(evidence, now.add_micros(-i * 60_000_000).expect("in range")).expect("valid")
        };
        let written = vec![denied(1, vec!["limit", "risk"]), denied(2, vec!["limit"]), denied(3, vec!["risk"])];
        store.append_history(&written).await.expect("append");
        let codes = match backend {
            DbBackend::Postgres => "ARRAY['limit', NULL]::text[]",
            _ => r#"'["limit", null]'"#,
        };
        let sql = format!(
            "INSERT INTO governance_history (workspace_id, id, category, code, actor_kind, actor_id, actor, \
             object_type, operation, decision, outcome, reason_codes, created_at, content_hash) \
             SELECT workspace_id, ?, category, code, actor_kind, actor_id, actor, object_type, operation, decision, \
             outcome, {codes}, created_at, content_hash FROM governance_history WHERE workspace_id = ? AND id = ?"
        );
        let values = vec![uuid::Uuid::now_v7().into(), ws.as_str().into(), written[1].id().as_uuid().into()];
        raw(store.connection(), &sql, values).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        if backend == DbBackend::Postgres {
            // Folds the row (all but its NULL code) and goes on.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            let mut folded = 0;
            while folded < 4 {
                folded += store.roll_up_counts(&ws).await.unwrap_or_else(|e| panic!("{name}: roll up: {e}"));
                assert!(std::time::Instant::now() < deadline, "{name}: {folded} of 4 folded");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        let at = |micros: i64| now.add_micros(micros).expect("in range");
        for window in [
            TimeRange::default(),
            TimeRange { from: Some(at(-10 * 3_600_000_000)), until: Some(at(3_600_000_000)) },
            TimeRange { from: Some(at(-150_000_000)), until: Some(at(-90_000_000)) },
        ] {
            let query = CountQuery::new(CountBy::ReasonCode, window).decision(Decision::Denied);
            let counts = store.count_history(&ws, &query).await.unwrap_or_else(|e| panic!("{name}: {window:?}: {e}"));
            let count = |key: &str| counts.iter().find(|c| c.key == key).map_or(0, |c| c.count);
            // The copy of the second record falls in every window the original does.
            let limit = written
                .iter()
                .filter(|r| query.counts(r))
                .filter(|r| r.evidence().reason_codes.contains(&"limit".to_owned()))
                .count() as u64
                + u64::from(query.counts(&written[1]));
            assert_eq!(count("limit"), limit, "{name}: {window:?}: {counts:?}");
            assert!(counts.iter().all(|c| ["limit", "risk"].contains(&c.key.as_str())), "{name}: {counts:?}");
        }
        if backend == DbBackend::Sqlite {
            let sql = sql.replace(codes, "'[7]'");
            let values = vec![uuid::Uuid::now_v7().into(), ws.as_str().into(), written[0].id().as_uuid().into()];
            raw(store.connection(), &sql, values).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            let query = CountQuery::new(CountBy::ReasonCode, TimeRange::default());
            let refused = store.count_history(&ws, &query).await.expect_err("a code that is not text");
            assert!(!refused.to_string().is_empty(), "{name}: {refused:?}");
        }
    }
}

/// PostgreSQL: a store of this version on a database not migrated as far
/// (before `migrate()` ran in a rolling upgrade) counts the records: the
/// watermark it would read is not there.
#[tokio::test]
async fn counts_on_a_postgres_database_not_migrated_this_far_read_the_records() {
    for (name, store, _dir) in stores().await {
        if store.connection().get_database_backend() != DbBackend::Postgres {
            continue;
        }
        let ws = workspace();
        let records: Vec<HistoryRecord> = (0..12)
            .map(|i| {
                let evidence = Evidence::decision(ws.clone(), Actor::user("u"), "o", "op", Decision::Denied)
                    .reason_codes(vec!["limit"]);
                HistoryRecord::new(evidence, Timestamp::now().add_micros(-(i * 600_000_000 + 1)).expect("in range"))
                    .expect("valid")
            })
            .collect();
        store.append_history(&records).await.expect("append");
        let window = TimeRange { from: Timestamp::now().add_micros(-86_400_000_000), until: None };
        let query = CountQuery::new(CountBy::ReasonCode, window);
        let before = store.count_history(&ws, &query).await.expect("count");
        assert_eq!(before.iter().map(|c| c.count).sum::<u64>(), 12, "{name}: {before:?}");
        for sql in
            ["ALTER TABLE governance_count_rollups DROP COLUMN days_through_tx", "DROP TABLE governance_count_rollups"]
        {
            store.connection().execute_unprepared(sql).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            let after = store.count_history(&ws, &query).await.unwrap_or_else(|e| panic!("{name}: {sql}: {e}"));
            assert_eq!(after, before, "{name}: after {sql}");
        }
    }
}
