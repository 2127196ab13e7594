//! The built `governance` binary, run as an operator would: every
//! subcommand against SQLite and PostgreSQL, the conformance command with no
//! configuration, against a closed port, and as JUnit XML.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_history::Recorder;
use chrono::{DateTime, Utc};
use conformance_tests::{CASES, TamperAccess};
use governance_abstractions::{
    Actor, CountBy, CountQuery, Decision, Evidence, GovernanceStore, HistoryRecord, RecordId, TimeRange, Timestamp,
    WorkspaceId,
};
use serde_json::Value;

/// Variables that would point the command at a configured server.
const SERVER_VARIABLES: [&str; 4] =
    ["GOVERNANCE_POSTGRES_URL", "GOVERNANCE_MYSQL_URL", "GOVERNANCE_REQUIRE_DATABASES", "GOVERNANCE_URL"];

/// The command with none of the servers configured, plus `env`.
fn governance(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_governance"));
    for variable in SERVER_VARIABLES {
        command.env_remove(variable);
    }
    // No Docker engine to find: a container would stand in for a server.
    command.env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    command.args(args).envs(env.iter().copied());
    command.output().expect("the governance binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", stdout(output), stderr(output)))
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port()
}

#[test]
fn conformance_with_no_configuration_runs_the_embedded_providers_and_passes() {
    let output = governance(&["conformance", "--format", "json", "--parallel", "4"], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let doc = json(&output);
    let providers: HashMap<String, &Value> = doc["providers"]
        .as_array()
        .expect("providers")
        .iter()
        .map(|p| (p["name"].as_str().unwrap_or("").to_owned(), p))
        .collect();
    for name in ["memory", "seaorm-sqlite"] {
        let p = providers[name];
        assert_eq!(p["status"], "ran", "{p}");
        assert_eq!(p["failed"], 0, "{p}");
        assert_eq!(p["passed"].as_u64().unwrap_or(0) + p["skipped"].as_u64().unwrap_or(0), CASES.len() as u64);
        assert!(p["ms"].as_u64().is_some(), "time per provider: {p}");
    }
    for name in ["postgres", "seaorm-postgres", "seaorm-mysql"] {
        assert_eq!(providers[name]["status"], "not-configured", "{}", providers[name]);
    }
    assert!(stderr(&output).contains("conformance: "), "the summary is shown: {}", stderr(&output));
}

#[test]
fn conformance_against_a_closed_port_fails_fast_naming_the_cause_and_never_the_password() {
    let url = format!("postgres://operator:Hunter2-secret@127.0.0.1:{}/test", closed_port());
    for format in ["text", "json", "junit"] {
        let started = Instant::now();
        let output = governance(&["conformance", "--format", format], &[("GOVERNANCE_POSTGRES_URL", &url)]);
        let elapsed = started.elapsed();
        assert_eq!(output.status.code(), Some(1), "{format}: {}", stderr(&output));
        assert!(elapsed < Duration::from_secs(15), "{format}: took {elapsed:?}");
        let all = format!("{}{}", stdout(&output), stderr(&output));
        assert!(all.contains("Connection refused"), "{format}: the cause is named:\n{all}");
        assert!(all.contains("postgres://operator:***@127.0.0.1"), "{format}: the URL, masked:\n{all}");
        assert!(!all.contains("Hunter2-secret"), "{format}: the password leaked:\n{all}");
    }
}

#[test]
fn a_misspelt_require_flag_is_refused_with_the_accepted_spellings() {
    let output = governance(&["conformance", "--provider", "memory"], &[("GOVERNANCE_REQUIRE_DATABASES", "maybe")]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("1/0, true/false, yes/no or on/off"), "{}", stderr(&output));
    // Any case of the usual spellings is accepted; "off" runs with databases optional.
    let output = governance(
        &["conformance", "--provider", "memory", "--format", "json"],
        &[("GOVERNANCE_REQUIRE_DATABASES", "OFF")],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    // "yes" makes the unconfigured server a failure.
    let output = governance(&["conformance", "--provider", "postgres"], &[("GOVERNANCE_REQUIRE_DATABASES", "Yes")]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
}

#[test]
fn bad_arguments_exit_2() {
    assert_eq!(governance(&["conformance", "--provider", "oracle"], &[]).status.code(), Some(2));
    assert_eq!(
        governance(&["stats", "--url", "sqlite:x.db", "--workspace", "w", "--since", "soon"], &[]).status.code(),
        Some(2)
    );
    let output = governance(&["verify", "--url", "http://u:pw-xyz@h/db", "--workspace", "w"], &[]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(!stderr(&output).contains("pw-xyz"), "{}", stderr(&output));
    let output =
        governance(&["export", "--url", "sqlite:x.db", "--workspace", "w", "--dir", "d", "--day", "2026-13-01"], &[]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
}

/// Reads a JUnit document: the number of `<testcase>` elements per suite,
/// failing on anything that is not well-formed XML.
fn junit_cases(xml: &str) -> HashMap<String, usize> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut suites = HashMap::new();
    let (mut suite, mut depth, mut root) = (String::new(), 0usize, None);
    loop {
        match reader.read_event().unwrap_or_else(|e| panic!("not XML: {e}\n{xml}")) {
            Event::Start(e) | Event::Empty(e)
                if matches!(e.name().as_ref(), b"testsuites" | b"testsuite" | b"testcase") =>
            {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                root.get_or_insert(name.clone());
                let attribute = |key: &[u8]| {
                    e.attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == key)
                        .map(|a| String::from_utf8_lossy(&a.value).into_owned())
                };
                match name.as_str() {
                    "testsuite" => suite = attribute(b"name").expect("a suite has a name"),
                    "testcase" => {
                        assert!(attribute(b"name").is_some(), "a case has a name");
                        *suites.entry(suite.clone()).or_insert(0) += 1;
                    }
                    _ => {}
                }
                depth += 1;
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert!(depth > 0, "no JUnit elements in:\n{xml}");
    assert_eq!(root.as_deref(), Some("testsuites"), "the root is <testsuites>");
    suites
}

#[test]
fn junit_output_parses_and_lists_every_case() {
    let output =
        governance(&["conformance", "--provider", "memory", "--provider", "postgres", "--format", "junit"], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let xml = stdout(&output);
    let suites = junit_cases(&xml);
    assert_eq!(suites.get("memory"), Some(&CASES.len()), "{suites:?}");
    // The provider that did not run lists every case too, as skipped.
    assert_eq!(suites.get("postgres"), Some(&CASES.len()), "{suites:?}");
    for case in CASES {
        assert!(xml.contains(&format!("name=\"{}\"", case.name)), "{} missing", case.name);
    }
}

// ---------------------------------------------------------------------------
// The database commands, on SQLite and on PostgreSQL.

fn workspace() -> WorkspaceId {
    WorkspaceId::new(format!("cli-{}", uuid_like())).expect("workspace")
}

fn uuid_like() -> String {
    RecordId::new().to_string().replace('-', "")
}

/// What the scenario wrote: record ids by day.
struct Written {
    today: Vec<RecordId>,
    yesterday: Vec<RecordId>,
}

async fn populate(store: &Arc<dyn GovernanceStore>, ws: &WorkspaceId) -> Written {
    let recorder = Recorder::new(store.clone());
    let mut today = Vec::new();
    let decisions = [
        ("alice", "create", Decision::Approved, vec![]),
        ("alice", "delete", Decision::Denied, vec!["quota", "policy"]),
        ("bob", "delete", Decision::Denied, vec!["policy"]),
        ("bob", "create", Decision::Denied, vec!["policy"]),
        ("carol", "update", Decision::Approved, vec![]),
    ];
    for (who, op, decision, codes) in decisions {
        let evidence = Evidence::decision(ws.clone(), Actor::user(who), "invoice", op, decision).reason_codes(codes);
        today.push(recorder.record(evidence).await.expect("recorded").record.id());
    }
    let yesterday_at = Timestamp::from_datetime(Utc::now() - chrono::Duration::days(1));
    let records: Vec<HistoryRecord> = (0..3)
        .map(|n| {
            let evidence =
                Evidence::decision(ws.clone(), Actor::user("dave"), "invoice", format!("old{n}"), Decision::Denied)
                    .reason_codes(["late"]);
            HistoryRecord::new(evidence, yesterday_at.add_micros(n).expect("in range")).expect("record")
        })
        .collect();
    store.append_history(&records).await.expect("appended");
    Written { today, yesterday: records.iter().map(HistoryRecord::id).collect() }
}

/// Every record id in the export under `dir`, with how often it appears.
fn exported_ids(dir: &Path) -> HashMap<String, usize> {
    fn walk(dir: &Path, found: &mut HashMap<String, usize>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "jsonl") {
                for line in std::fs::read_to_string(&path).expect("readable").lines() {
                    let line: Value = serde_json::from_str(line).expect("a JSON line");
                    let id = line["record"]["id"].as_str().expect("an id").to_owned();
                    *found.entry(id).or_insert(0) += 1;
                }
            }
        }
    }
    let mut found = HashMap::new();
    walk(dir, &mut found);
    found
}

/// Every subcommand against one database, as its operator would run them.
async fn scenario(url: &str, extra: &[&str], store: Arc<dyn GovernanceStore>, tamper: Arc<dyn TamperAccess>) {
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&["--url", url]);
        all.extend_from_slice(extra);
        governance(&all, &[])
    };
    let ws = workspace();
    let ws_arg = ws.as_str();
    let written = populate(&store, &ws).await;
    let dir = tempfile::tempdir().expect("directory");
    let dir_arg = dir.path().to_str().expect("utf-8 path");
    let today = Utc::now().date_naive().to_string();
    let yesterday = (Utc::now() - chrono::Duration::days(1)).date_naive().to_string();

    // Nothing sealed yet: the export says so.
    let output = run(&["export", "--workspace", ws_arg, "--dir", dir_arg, "--day", &today, "--format", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let doc = json(&output);
    assert_eq!(doc["records"], 0);
    assert!(
        doc["why_none"].as_str().unwrap_or("").contains("5 records on")
            && doc["why_none"].as_str().unwrap_or("").contains("not sealed"),
        "{doc}"
    );

    // Seal, then verify clean (against the anchor the seal wrote).
    let anchor = dir.path().join("anchor.json");
    let output =
        run(&["seal", "--workspace", ws_arg, "--format", "json", "--anchor-out", anchor.to_str().expect("path")]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(json(&output)["records"], 8, "{}", stdout(&output));
    let output =
        run(&["verify", "--workspace", ws_arg, "--anchor", anchor.to_str().expect("path"), "--format", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}{}", stdout(&output), stderr(&output));
    let doc = json(&output);
    assert_eq!(
        (doc["clean"].clone(), doc["sealed"].clone(), doc["anchored"].clone()),
        (Value::Bool(true), 8.into(), Value::Bool(true)),
        "{doc}"
    );
    let output = run(&["verify", "--workspace", ws_arg]);
    assert!(stdout(&output).contains("clean"), "{}", stdout(&output));

    // A day exported twice: each record once, the second run writes none and says why.
    let output = run(&["export", "--workspace", ws_arg, "--dir", dir_arg, "--day", &today, "--format", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(json(&output)["records"], 5, "{}", stdout(&output));
    let output = run(&["export", "--workspace", ws_arg, "--dir", dir_arg, "--day", &today]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("exported 0 records") && stdout(&output).contains("nothing new"),
        "{}",
        stdout(&output)
    );
    let ids = exported_ids(dir.path());
    assert_eq!(ids.len(), 5, "only today's records: {ids:?}");
    for id in &written.today {
        assert_eq!(ids.get(&id.to_string()), Some(&1), "{id} exported exactly once: {ids:?}");
    }
    // The other day, and a window spanning both: still each record once.
    let output = run(&["export", "--workspace", ws_arg, "--dir", dir_arg, "--day", &yesterday, "--format", "json"]);
    assert_eq!(json(&output)["records"], 3, "{}", stdout(&output));
    let output = run(&["export", "--workspace", ws_arg, "--dir", dir_arg, "--since", &yesterday, "--format", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let ids = exported_ids(dir.path());
    assert_eq!(ids.len(), 8, "{ids:?}");
    assert!(ids.values().all(|n| *n == 1), "no record in two files: {ids:?}");
    assert!(written.yesterday.iter().all(|id| ids.contains_key(&id.to_string())));
    let tomorrow = (Utc::now() + chrono::Duration::days(2)).date_naive().to_string();
    let output = run(&["export", "--workspace", ws_arg, "--dir", dir_arg, "--day", &tomorrow, "--format", "json"]);
    assert!(json(&output)["why_none"].as_str().unwrap_or("").contains("no sealed records on"), "{}", stdout(&output));
    // A full export into the same directory is refused: it would duplicate.
    let output = run(&["export", "--workspace", ws_arg, "--dir", dir_arg]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    // A full export elsewhere, twice: every sealed record once.
    let full = tempfile::tempdir().expect("directory");
    let full_arg = full.path().to_str().expect("utf-8 path");
    assert_eq!(json(&run(&["export", "--workspace", ws_arg, "--dir", full_arg, "--format", "json"]))["records"], 8);
    let again = json(&run(&["export", "--workspace", ws_arg, "--dir", full_arg, "--format", "json"]));
    assert_eq!(again["records"], 0);
    assert!(again["why_none"].as_str().unwrap_or("").contains("up to leaf 8"), "{again}");
    assert_eq!(exported_ids(full.path()).len(), 8);

    // Stats: exactly the library's counts over the same window.
    let (since, until) = (Utc::now() - chrono::Duration::days(3), Utc::now() + chrono::Duration::hours(1));
    let (since_arg, until_arg) = (since.to_rfc3339(), until.to_rfc3339());
    let output =
        run(&["stats", "--workspace", ws_arg, "--since", &since_arg, "--until", &until_arg, "--format", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let doc = json(&output);
    let at = |t: DateTime<Utc>| {
        Timestamp::from_datetime(DateTime::parse_from_rfc3339(&t.to_rfc3339()).expect("time").with_timezone(&Utc))
    };
    let window = TimeRange::between(at(since), at(until));
    let expected = [
        ("deny_reasons", CountQuery::new(CountBy::ReasonCode, window).decision(Decision::Denied).limit(10)),
        ("principals", CountQuery::new(CountBy::Principal, window).limit(10)),
        ("operations", CountQuery::new(CountBy::Operation, window).limit(10)),
        ("decisions", CountQuery::new(CountBy::Decision, window)),
    ];
    for (key, query) in expected {
        let counts = store.count_history(&ws, &query).await.expect("counts");
        let shown: Vec<(String, u64)> = doc[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} in {doc}"))
            .iter()
            .map(|c| (c["key"].as_str().unwrap_or("").to_owned(), c["count"].as_u64().unwrap_or(0)))
            .collect();
        let library: Vec<(String, u64)> = counts.into_iter().map(|c| (c.key, c.count)).collect();
        assert_eq!(shown, library, "{key}");
    }
    let policy = doc["deny_reasons"].as_array().and_then(|rows| rows.iter().find(|r| r["key"] == "policy")).cloned();
    assert_eq!(policy.map(|r| r["count"].clone()), Some(3.into()), "{doc}");
    // Rolling up the hourly counts changes no count; only PostgreSQL keeps
    // them, through either provider.
    let output = run(&["roll-up", "--workspace", ws_arg]);
    if url.starts_with("postgres") {
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        assert!(stdout(&output).contains("rolled up "), "{}", stdout(&output));
        let rerun =
            run(&["stats", "--workspace", ws_arg, "--since", &since_arg, "--until", &until_arg, "--format", "json"]);
        assert_eq!(json(&rerun), doc, "the same counts from the hourly rows");
    } else {
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        assert!(stderr(&output).contains("keeps no hourly decision counts"), "{}", stderr(&output));
    }
    let table = stdout(&run(&["stats", "--workspace", ws_arg, "--since", &since_arg, "--until", &until_arg]));
    assert!(table.contains("top deny reasons") && table.contains("| policy") && table.contains("user:dave"), "{table}");

    // Tamper with one sealed record: verify names it and fails.
    let victim = written.today[2];
    tamper.alter_record(&ws, victim, None).await.expect("tampered");
    let output = run(&["verify", "--workspace", ws_arg, "--format", "json"]);
    assert_eq!(output.status.code(), Some(1), "{}{}", stdout(&output), stderr(&output));
    let doc = json(&output);
    assert_eq!(doc["clean"], false);
    assert_eq!(doc["problem"]["kind"], "record-altered", "{doc}");
    assert_eq!(doc["problem"]["record"], victim.to_string(), "{doc}");
    let output = run(&["verify", "--workspace", ws_arg]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains(&format!("PROBLEM: record {victim}")), "{}", stdout(&output));
    // The exporter refuses to export it.
    let fresh = tempfile::tempdir().expect("directory");
    let output =
        run(&["export", "--workspace", ws_arg, "--dir", fresh.path().to_str().expect("path"), "--day", &today]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(stderr(&output).contains(&victim.to_string()), "{}", stderr(&output));
}

#[tokio::test]
async fn every_database_command_on_sqlite() {
    use governance_seaorm::SeaOrmStore;
    let dir = tempfile::tempdir().expect("directory");
    let path = dir.path().join("governance.db");
    let url = format!("sqlite:{}", path.display());
    // Before migrating there is no database: a clear error, not an empty one.
    let output = governance(&["verify", "--url", &url, "--workspace", "w"], &[]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("governance migrate"), "{}", stderr(&output));
    let output = governance(&["migrate", "--url", &url], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("seaorm-sqlite"), "{}", stdout(&output));
    let store = SeaOrmStore::open_sqlite(&path).await.expect("opens");
    let tamper = Arc::new(governance_seaorm::testing::SeaOrmTamper::new(store.connection().clone()));
    scenario(&url, &[], Arc::new(store), tamper).await;
}

/// A PostgreSQL test database (dropped at the end), or `None` when no
/// server is configured and none is required.
async fn postgres_database() -> Option<governance_test_support::TestDatabase> {
    use governance_test_support::{Server, fresh_test_database, server_url, setup_fails};
    let server = match server_url(Server::Postgres).await {
        Ok(server) => server,
        Err(why) if !setup_fails(&why) => {
            eprintln!("skipped: PostgreSQL {why}");
            return None;
        }
        Err(why) => panic!("PostgreSQL required: {why}"),
    };
    Some(fresh_test_database(&server, Server::Postgres).await.expect("fresh database"))
}

#[tokio::test]
async fn every_database_command_on_postgres_through_both_providers() {
    use governance_postgres::PostgresStore;
    let Some(database) = postgres_database().await else { return };
    let url = database.url().to_owned();
    let output = governance(&["migrate", "--url", &url], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("(postgres)"), "{}", stdout(&output));
    let store = PostgresStore::connect(&url).await.expect("connects");
    let tamper = Arc::new(governance_postgres::testing::PostgresTamper::new(store.pool().clone()));
    scenario(&url, &[], Arc::new(store.clone()), tamper.clone()).await;
    // The same database through SeaORM (both providers share the schema).
    scenario(&url, &["--provider", "seaorm"], Arc::new(store), tamper).await;
}

#[test]
fn a_database_command_against_a_closed_port_fails_fast_with_the_cause_and_no_password() {
    let port = closed_port();
    for (url, provider) in [
        (format!("postgres://ops:Sw0rdfish-pw@127.0.0.1:{port}/gov"), None),
        (format!("postgres://ops:Sw0rdfish-pw@127.0.0.1:{port}/gov"), Some("seaorm")),
        (format!("mysql://ops:Sw0rdfish-pw@127.0.0.1:{port}/gov"), None),
    ] {
        let mut args = vec!["stats", "--workspace", "w"];
        if let Some(provider) = provider {
            args.extend_from_slice(&["--provider", provider]);
        }
        let started = Instant::now();
        // The URL from the environment, as a deployment would set it.
        let output = governance(&args, &[("GOVERNANCE_URL", &url)]);
        assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
        assert_eq!(output.status.code(), Some(3), "{url}: {}", stderr(&output));
        let all = format!("{}{}", stdout(&output), stderr(&output));
        assert!(all.contains("Connection refused") && all.contains("ops:***@127.0.0.1"), "{all}");
        assert!(!all.contains("Sw0rdfish-pw"), "{all}");
    }
    // --provider postgres cannot open a MySQL URL: a usage error.
    let url = format!("mysql://ops@127.0.0.1:{port}/gov");
    let output = governance(&["migrate", "--url", &url, "--provider", "postgres"], &[]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
}

#[test]
fn help_names_every_subcommand() {
    let help = stdout(&governance(&["--help"], &[]));
    for command in ["conformance", "migrate", "seal", "verify", "export", "stats", "roll-up"] {
        assert!(help.contains(command), "{command} in:\n{help}");
    }
}

/// A TCP server that accepts every connection and never sends a byte: a
/// host that answers nothing, the case a refused port does not cover.
fn silent_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    port
}

#[test]
fn a_server_that_never_answers_is_reported_within_seconds() {
    let url = format!("postgres://ops:Quiet-pw-7@127.0.0.1:{}/gov", silent_server());
    let started = Instant::now();
    let output = governance(&["verify", "--url", &url, "--workspace", "w"], &[]);
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(stderr(&output).contains("no answer within 5 s"), "{}", stderr(&output));
    let started = Instant::now();
    let output = governance(&["conformance", "--provider", "postgres"], &[("GOVERNANCE_POSTGRES_URL", &url)]);
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let all = format!("{}{}", stdout(&output), stderr(&output));
    assert!(all.contains("no answer within 5 s") && !all.contains("Quiet-pw-7"), "{all}");
}
