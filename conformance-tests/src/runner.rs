//! Runs cases against a backend and reports the outcome.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::CASES;
use crate::harness::{Case, CaseContext, SetupError, StoreFactory};

/// Set to a true value (`1`, `true`, `yes`, `on`; CI sets it) to turn a
/// database that is not configured into a failure too. A database that is
/// configured but does not answer fails whatever this says.
pub const REQUIRE_DATABASES_ENV: &str = "GOVERNANCE_REQUIRE_DATABASES";

/// A case that runs longer than this fails, unless [`CASE_TIMEOUT_ENV`] says
/// otherwise.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(180);

/// Seconds each case may run (a whole number, at least 1), in place of
/// [`CASE_TIMEOUT`]: longer for a slow remote database, shorter for a
/// mutation-testing run where a hang should fail fast.
pub const CASE_TIMEOUT_ENV: &str = "GOVERNANCE_CASE_TIMEOUT_SECS";

/// The time each case may run: [`CASE_TIMEOUT_ENV`] when set, else
/// [`CASE_TIMEOUT`]. A value that is not a whole number of seconds of at
/// least 1 is an error, never silently the default.
pub fn case_timeout() -> Result<Duration, String> {
    timeout_setting(std::env::var(CASE_TIMEOUT_ENV))
}

fn timeout_setting(setting: Result<String, std::env::VarError>) -> Result<Duration, String> {
    let invalid = |value: &str| format!("{CASE_TIMEOUT_ENV}={value:?} is not a whole number of seconds of at least 1");
    match setting {
        Err(std::env::VarError::NotPresent) => Ok(CASE_TIMEOUT),
        Err(std::env::VarError::NotUnicode(raw)) => Err(invalid(&raw.to_string_lossy())),
        Ok(value) => match value.trim().parse::<u64>() {
            Ok(seconds) if seconds >= 1 => Ok(Duration::from_secs(seconds)),
            _ => Err(invalid(&value)),
        },
    }
}

/// A value of [`REQUIRE_DATABASES_ENV`] that is not one of the accepted
/// spellings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidFlag {
    /// The value as set.
    pub value: String,
}

impl std::fmt::Display for InvalidFlag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{REQUIRE_DATABASES_ENV}={:?} is not a boolean: use 1/0, true/false, yes/no or on/off (any case), or leave it unset",
            self.value
        )
    }
}

impl std::error::Error for InvalidFlag {}

/// Parses a boolean setting: `1/0`, `true/false`, `yes/no`, `on/off`, in
/// any case, surrounding blanks ignored. Anything else is an error rather
/// than a silent `false`: a typo in CI must not turn required databases
/// into optional ones.
pub fn parse_flag(value: &str) -> Result<bool, InvalidFlag> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(InvalidFlag { value: value.to_owned() }),
    }
}

/// [`REQUIRE_DATABASES_ENV`] as set: `false` when unset or empty, an error
/// when set to something [`parse_flag`] does not accept.
pub fn require_databases() -> Result<bool, InvalidFlag> {
    match std::env::var(REQUIRE_DATABASES_ENV) {
        Ok(value) if value.trim().is_empty() => Ok(false),
        Ok(value) => parse_flag(&value),
        Err(std::env::VarError::NotPresent) => Ok(false),
        Err(std::env::VarError::NotUnicode(raw)) => Err(InvalidFlag { value: raw.to_string_lossy().into_owned() }),
    }
}

/// True when [`REQUIRE_DATABASES_ENV`] is set to a true value.
///
/// # Panics
///
/// When the variable holds something else than the accepted spellings: this
/// is what tests call, and a test must fail loudly on a misspelt setting
/// rather than run with databases optional. Programs should call
/// [`require_databases`] and report the error themselves.
pub fn databases_required() -> bool {
    match require_databases() {
        Ok(required) => required,
        Err(invalid) => panic!("{invalid}"),
    }
}

/// Whether a store that could not be opened fails a case (instead of
/// skipping it): always when the database is configured but does not
/// answer, and when it is not configured while databases are required.
pub fn setup_fails(error: &SetupError) -> bool {
    match error {
        SetupError::Unavailable(_) => true,
        SetupError::NotConfigured(_) => databases_required(),
    }
}

/// How one case ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CaseStatus {
    /// Every assertion held.
    Passed,
    /// An assertion failed, the case panicked or timed out.
    Failed,
    /// The backend lacks a capability the case needs, or is not set up here.
    Skipped,
}

/// One case's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct CaseReport {
    /// The case.
    pub name: &'static str,
    /// Its group.
    pub group: &'static str,
    /// How it ended.
    pub status: CaseStatus,
    /// Wall time in milliseconds.
    pub ms: u64,
    /// Why it failed or was skipped.
    pub message: Option<String>,
}

/// Whether a provider's cases ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderStatus {
    /// The suite ran.
    Ran,
    /// Not configured here (e.g. no URL); nothing ran.
    NotConfigured,
    /// Configured but unreachable; nothing ran.
    Unavailable,
}

/// One provider's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct ProviderReport {
    /// The provider.
    pub name: String,
    /// Whether its cases ran.
    pub status: ProviderStatus,
    /// Why they did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Cases passed.
    pub passed: usize,
    /// Cases failed.
    pub failed: usize,
    /// Cases skipped.
    pub skipped: usize,
    /// Wall time of the whole provider in milliseconds (opening it included).
    pub ms: u64,
    /// Every case, in suite order.
    pub cases: Vec<CaseReport>,
}

impl ProviderReport {
    /// The cases with `status`, in suite order.
    pub fn cases_with(&self, status: CaseStatus) -> impl Iterator<Item = &CaseReport> {
        self.cases.iter().filter(move |case| case.status == status)
    }

    /// Each failed case as `name: message`, for an assertion's message.
    pub fn failures(&self) -> Vec<String> {
        self.cases_with(CaseStatus::Failed)
            .map(|case| format!("{}: {}", case.name, case.message.as_deref().unwrap_or_default()))
            .collect()
    }

    fn new(name: String, status: ProviderStatus, message: Option<String>, cases: Vec<CaseReport>) -> Self {
        let count = |s| cases.iter().filter(|c| c.status == s).count();
        Self {
            passed: count(CaseStatus::Passed),
            failed: count(CaseStatus::Failed),
            skipped: count(CaseStatus::Skipped),
            ms: 0,
            name,
            status,
            message,
            cases,
        }
    }
}

/// Runs one case on a fresh store from `factory`, failing it after
/// [`case_timeout`].
pub async fn run_case(factory: Arc<dyn StoreFactory>, case: &'static Case) -> CaseReport {
    match case_timeout() {
        Ok(limit) => run_case_within(factory, case, limit).await,
        Err(message) => CaseReport {
            name: case.name,
            group: case.group.name(),
            status: CaseStatus::Failed,
            ms: 0,
            message: Some(message),
        },
    }
}

/// Runs one case on a fresh store from `factory`, failing it, by name, when
/// it has not finished within `limit`.
///
/// The case runs on a thread and runtime of its own (its store is opened
/// there too), so even a case that spins without ever yielding — a retry
/// loop that never ends, say — is reported as failed on time instead of
/// stalling the suite: its thread is left behind, never waited for.
pub async fn run_case_within(factory: Arc<dyn StoreFactory>, case: &'static Case, limit: Duration) -> CaseReport {
    let started = Instant::now();
    let failed = |message: String| CaseReport {
        name: case.name,
        group: case.group.name(),
        status: CaseStatus::Failed,
        ms: started.elapsed().as_millis() as u64,
        message: Some(message),
    };
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new().name(format!("case {}", case.name)).spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
        let runtime = match runtime {
            Ok(runtime) => runtime,
            Err(error) => {
                let _ = sender.send(Err(format!("could not start a runtime for the case: {error}")));
                return;
            }
        };
        let report = runtime.block_on(run_case_here(factory, case, limit));
        let _ = sender.send(Ok(report));
        // A task the case left spinning must not keep this thread alive.
        runtime.shutdown_background();
    });
    if let Err(error) = thread {
        return failed(format!("could not start a thread for the case: {error}"));
    }
    // The case's own deadline fires first for anything that yields; this one
    // catches what never does.
    match tokio::time::timeout(limit + Duration::from_secs(2), receiver).await {
        Ok(Ok(Ok(report))) => report,
        Ok(Ok(Err(message))) => failed(message),
        Ok(Err(_)) => failed("the case's thread ended without a report".into()),
        Err(_) => failed(format!("{} did not finish within {limit:?}: it hangs without yielding", case.name)),
    }
}

/// The case itself, on the runtime of the thread that runs it.
async fn run_case_here(factory: Arc<dyn StoreFactory>, case: &'static Case, limit: Duration) -> CaseReport {
    let started = Instant::now();
    let report = |status, message: Option<String>| CaseReport {
        name: case.name,
        group: case.group.name(),
        status,
        ms: started.elapsed().as_millis() as u64,
        message,
    };
    let capabilities = factory.capabilities();
    if let Some((capability, why)) =
        case.requires.iter().find_map(|c| capabilities.missing_reason(*c).map(|why| (c, why)))
    {
        return report(CaseStatus::Skipped, Some(format!("lacks {capability}: {why}")));
    }
    let opened = match factory.open().await {
        Ok(opened) => opened,
        // Configured but not answering is never a skip: a green run must
        // mean the suite ran there.
        Err(error @ SetupError::Unavailable(_)) => return report(CaseStatus::Failed, Some(error.to_string())),
        Err(error) if databases_required() => {
            return report(CaseStatus::Failed, Some(format!("{error} ({REQUIRE_DATABASES_ENV} is set)")));
        }
        Err(error) => return report(CaseStatus::Skipped, Some(error.to_string())),
    };
    // A task of its own turns a panic into a failure instead of aborting the run.
    let mut task = tokio::spawn((case.run)(CaseContext::new(opened)));
    match tokio::time::timeout(limit, &mut task).await {
        Ok(Ok(Ok(()))) => report(CaseStatus::Passed, None),
        Ok(Ok(Err(failure))) => report(CaseStatus::Failed, Some(failure.0)),
        Ok(Err(join)) => report(CaseStatus::Failed, Some(panic_message(join))),
        Err(_) => {
            // Stop it, so it no longer touches the database.
            task.abort();
            report(CaseStatus::Failed, Some(format!("{} timed out after {limit:?}", case.name)))
        }
    }
}

fn panic_message(join: tokio::task::JoinError) -> String {
    match join.try_into_panic() {
        Ok(panic) => panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .map_or_else(|| "panicked".to_owned(), |m| format!("panicked: {m}")),
        Err(join) => format!("task failed: {join}"),
    }
}

/// Runs every case against `factory`, `parallelism` at a time.
pub async fn run_suite(factory: Arc<dyn StoreFactory>, parallelism: usize) -> ProviderReport {
    run_suite_observed(factory, parallelism, Arc::new(|_: &CaseReport| {})).await
}

/// Called with each case's report as soon as the case ends (in completion
/// order, from any thread): what a progress display needs.
pub type CaseObserver = Arc<dyn Fn(&CaseReport) + Send + Sync>;

/// [`run_suite`], telling `observer` about each case as it ends.
pub async fn run_suite_observed(
    factory: Arc<dyn StoreFactory>,
    parallelism: usize,
    observer: CaseObserver,
) -> ProviderReport {
    let started = Instant::now();
    let mut report = run_suite_inner(factory, parallelism, observer).await;
    report.ms = started.elapsed().as_millis() as u64;
    report
}

async fn run_suite_inner(factory: Arc<dyn StoreFactory>, parallelism: usize, observer: CaseObserver) -> ProviderReport {
    let name = factory.name().to_owned();
    // Held until every case is done: a factory that shares one database
    // among the stores open at once keeps it for the whole suite.
    let _probe = match factory.open().await {
        Ok(probe) => probe,
        Err(error) => {
            let status = match error {
                SetupError::NotConfigured(_) => ProviderStatus::NotConfigured,
                SetupError::Unavailable(_) => ProviderStatus::Unavailable,
            };
            return ProviderReport::new(name, status, Some(error.to_string()), Vec::new());
        }
    };
    let permits = Arc::new(Semaphore::new(parallelism.max(1)));
    let mut tasks = JoinSet::new();
    for (index, case) in CASES.iter().enumerate() {
        let (factory, permits, observer) = (Arc::clone(&factory), Arc::clone(&permits), Arc::clone(&observer));
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let report = run_case(factory, case).await;
            observer(&report);
            (index, report)
        });
    }
    let mut cases: Vec<Option<CaseReport>> = vec![None; CASES.len()];
    while let Some(joined) = tasks.join_next().await {
        if let Ok((index, report)) = joined {
            cases[index] = Some(report);
        }
    }
    // run_case catches panics itself; a case without a report still shows, as failed.
    let cases = cases
        .into_iter()
        .zip(CASES)
        .map(|(report, case)| {
            report.unwrap_or_else(|| CaseReport {
                name: case.name,
                group: case.group.name(),
                status: CaseStatus::Failed,
                ms: 0,
                message: Some("the case's task ended without a report".into()),
            })
        })
        .collect();
    ProviderReport::new(name, ProviderStatus::Ran, None, cases)
}

/// The body of every test the [`conformance_suite!`](crate::conformance_suite)
/// macro generates: runs the named case and panics on failure. A skip is
/// printed, never silent.
pub async fn run_named_test(factory: Arc<dyn StoreFactory>, name: &str) {
    let Some(case) = CASES.iter().find(|c| c.name == name) else {
        panic!("no conformance case named {name}");
    };
    let provider = factory.name().to_owned();
    let report = run_case(factory, case).await;
    let message = report.message.unwrap_or_default();
    match report.status {
        CaseStatus::Passed => {}
        CaseStatus::Skipped => {
            // Straight to the process's stderr: the test harness captures
            // `eprintln!`, and a skip must show in the test output.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED {provider}::{name}: {message}");
        }
        CaseStatus::Failed => panic!("{provider}::{name} failed: {message}"),
    }
}

/// The reports as text: a case × provider matrix of the providers that ran,
/// every failure and skip with its message, a line per provider and the
/// totals. What a runner prints for people; `ProviderReport` serialises for
/// machines.
pub fn matrix(reports: &[ProviderReport]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let ran: Vec<&ProviderReport> = reports.iter().filter(|r| r.status == ProviderStatus::Ran).collect();
    let width = CASES.iter().map(|c| c.name.len()).max().unwrap_or(4);
    let mut header = format!("{:width$}  {:20}", "case", "group");
    for report in &ran {
        header.push_str(&format!("  {:>14}", report.name));
    }
    let _ = writeln!(out, "{header}");
    for (index, case) in CASES.iter().enumerate() {
        let mut line = format!("{:width$}  {:20}", case.name, case.group.name());
        for report in &ran {
            let cell = match report.cases.get(index).map(|c| c.status) {
                Some(CaseStatus::Passed) => "pass",
                Some(CaseStatus::Failed) => "FAIL",
                Some(CaseStatus::Skipped) => "skip",
                None => "-",
            };
            line.push_str(&format!("  {cell:>14}"));
        }
        let _ = writeln!(out, "{line}");
    }
    out.push('\n');
    for report in reports {
        for case in report.cases.iter().filter(|c| c.status != CaseStatus::Passed) {
            let message = case.message.as_deref().unwrap_or("");
            let _ = writeln!(
                out,
                "{} {}::{}: {message}",
                if case.status == CaseStatus::Failed { "FAILED" } else { "skipped" },
                report.name,
                case.name
            );
        }
    }
    out.push('\n');
    for report in reports {
        let status = match report.status {
            ProviderStatus::Ran => "ran",
            ProviderStatus::NotConfigured => "not-configured",
            ProviderStatus::Unavailable => "unavailable",
        };
        let why = report.message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default();
        let _ = writeln!(
            out,
            "{:16} {status:15} {} passed, {} failed, {} skipped in {:.1} s{why}",
            report.name,
            report.passed,
            report.failed,
            report.skipped,
            report.ms as f64 / 1000.0
        );
    }
    let total = |f: fn(&ProviderReport) -> usize| reports.iter().map(f).sum::<usize>();
    let _ = writeln!(
        out,
        "conformance: {} passed, {} failed, {} skipped",
        total(|r| r.passed),
        total(|r| r.failed),
        total(|r| r.skipped)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::{Capabilities, Group, TestStore};

    struct Memory;

    #[async_trait::async_trait]
    impl StoreFactory for Memory {
        fn name(&self) -> &str {
            "memory"
        }

        fn capabilities(&self) -> Capabilities {
            Capabilities::all()
        }

        async fn open(&self) -> Result<TestStore, SetupError> {
            Ok(TestStore::new(Arc::new(governance_memory::MemoryStore::new())))
        }
    }

    static SPINS: Case = Case {
        name: "spins_without_yielding",
        group: Group::Cas,
        requires: &[],
        run: |_| {
            Box::pin(async {
                loop {
                    std::hint::spin_loop();
                }
            })
        },
    };

    static WAITS: Case =
        Case { name: "waits_forever", group: Group::Cas, requires: &[], run: |_| Box::pin(std::future::pending()) };

    #[test]
    fn the_matrix_shows_every_case_each_failure_and_the_totals() {
        let cases: Vec<CaseReport> = CASES
            .iter()
            .enumerate()
            .map(|(i, case)| CaseReport {
                name: case.name,
                group: case.group.name(),
                status: if i == 0 { CaseStatus::Failed } else { CaseStatus::Passed },
                ms: 1,
                message: (i == 0).then(|| "it broke".to_owned()),
            })
            .collect();
        let ran = ProviderReport::new("mine".into(), ProviderStatus::Ran, None, cases);
        let away = ProviderReport::new("away".into(), ProviderStatus::Unavailable, Some("refused".into()), vec![]);
        let text = matrix(&[ran, away]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("case") && lines[0].contains("mine") && !lines[0].contains("away"), "{text}");
        for case in CASES.iter() {
            assert!(lines.iter().any(|l| l.starts_with(case.name)), "{} missing:\n{text}", case.name);
        }
        assert!(lines[1].ends_with("FAIL"), "{}", lines[1]);
        assert!(text.contains(&format!("FAILED mine::{}: it broke", CASES[0].name)), "{text}");
        assert!(text.contains("unavailable") && text.contains("(refused)"), "{text}");
        let total = format!("conformance: {} passed, 1 failed, 0 skipped", CASES.len() - 1);
        assert_eq!(lines.last(), Some(&total.as_str()), "{text}");
    }

    #[test]
    fn the_require_flag_takes_the_usual_spellings_and_refuses_the_rest() {
        for yes in ["1", "true", "TRUE", "Yes", "on", " ON "] {
            assert_eq!(parse_flag(yes), Ok(true), "{yes}");
        }
        for no in ["0", "false", "False", "NO", "off"] {
            assert_eq!(parse_flag(no), Ok(false), "{no}");
        }
        for bad in ["", "2", "y", "enabled", "truee", "-1"] {
            let error = parse_flag(bad).expect_err(bad);
            assert!(error.to_string().contains(REQUIRE_DATABASES_ENV) && error.to_string().contains("1/0"), "{error}");
        }
    }

    #[test]
    fn an_unreachable_database_fails_whatever_the_flag_says() {
        assert!(setup_fails(&SetupError::Unavailable("refused".into())));
    }

    #[test]
    fn the_case_timeout_is_whole_seconds_or_an_error() {
        use std::env::VarError::NotPresent;
        assert_eq!(timeout_setting(Err(NotPresent)), Ok(CASE_TIMEOUT));
        assert_eq!(timeout_setting(Ok("5".into())), Ok(Duration::from_secs(5)));
        assert_eq!(timeout_setting(Ok(" 600 ".into())), Ok(Duration::from_secs(600)));
        for bad in ["", "0", "-1", "1.5", "10s", "ten"] {
            let error = timeout_setting(Ok(bad.into())).expect_err(bad);
            assert!(error.contains(CASE_TIMEOUT_ENV) && error.contains(&format!("{bad:?}")), "{error}");
        }
    }

    #[tokio::test]
    async fn a_hanging_case_fails_within_its_timeout_naming_the_case() {
        for case in [&SPINS, &WAITS] {
            let started = Instant::now();
            let report = run_case_within(Arc::new(Memory), case, Duration::from_millis(300)).await;
            assert_eq!(report.status, CaseStatus::Failed, "{report:?}");
            assert!(report.message.as_deref().is_some_and(|m| m.contains(case.name)), "{report:?}");
            assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
        }
    }
}
