//! `governance conformance`: the suite over every provider it can reach.
//!
//! Every selected provider is opened once before any suite runs: a
//! configured server that does not answer is reported within seconds, with
//! its cause, instead of after the embedded providers' suites (unless
//! `--keep-going`). Each provider then runs with a progress bar (on a
//! terminal; plain lines otherwise) and its time; the summary comes last,
//! on stdout for text and on stderr for the machine formats.

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use conformance_tests::runner::{self, CaseReport, CaseStatus, ProviderReport, ProviderStatus};
use conformance_tests::{CASES, SetupError, StoreFactory, TestStore};
use governance_test_support::REQUIRE_DATABASES_ENV;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::Outcome;
use crate::error::{CliError, mask};

/// `governance conformance`.
#[derive(Debug, Args)]
pub(crate) struct Options {
    /// Only this provider (repeatable).
    #[arg(long = "provider", value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(PROVIDERS))]
    providers: Vec<String>,
    /// Output format: a matrix for people, one JSON object, or JUnit XML for CI systems.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Cases run at once per provider.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    parallel: u16,
    /// Run the providers that answer even when a configured one does not.
    #[arg(long)]
    keep_going: bool,
    /// A provider that is not configured fails the run (1/0, true/false, yes/no, on/off).
    #[arg(
        long,
        env = REQUIRE_DATABASES_ENV,
        value_name = "BOOL",
        value_parser = parse_flag,
        num_args = 0..=1,
        default_value = "false",
        default_missing_value = "true"
    )]
    require_databases: bool,
}

/// The runner's spellings; empty counts as unset, as the runner reads it.
fn parse_flag(value: &str) -> Result<bool, String> {
    if value.trim().is_empty() {
        return Ok(false);
    }
    runner::parse_flag(value).map_err(|e| e.to_string())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    /// A provider × case matrix and a summary.
    Text,
    /// One JSON object: `{"providers": [...]}`.
    Json,
    /// JUnit XML: one test suite per provider, one test case per case.
    Junit,
}

/// Every provider this workspace ships, embedded ones first.
fn providers() -> Vec<Arc<dyn StoreFactory>> {
    use governance_test_support::{PostgresFactory, SeaOrmServerFactory};
    vec![
        Arc::new(governance_memory::testing::MemoryFactory),
        Arc::new(governance_seaorm::testing::SqliteFactory),
        Arc::new(PostgresFactory),
        Arc::new(SeaOrmServerFactory::postgres()),
        Arc::new(SeaOrmServerFactory::mysql()),
    ]
}

/// The names of [`providers`], for argument checking (a test holds them equal).
const PROVIDERS: [&str; 5] = ["memory", "seaorm-sqlite", "postgres", "seaorm-postgres", "seaorm-mysql"];

pub(crate) fn provider_names() -> Vec<String> {
    providers().iter().map(|f| f.name().to_owned()).collect()
}

fn select(names: &[String]) -> Vec<Arc<dyn StoreFactory>> {
    let all = providers();
    if names.is_empty() {
        return all;
    }
    // clap checked the names; keep the suite's order, each once.
    all.into_iter().filter(|f| names.iter().any(|n| n == f.name())).collect()
}

/// A provider that did not run, as a report.
fn not_run(name: &str, error: &SetupError) -> ProviderReport {
    let status = match error {
        SetupError::NotConfigured(_) => ProviderStatus::NotConfigured,
        SetupError::Unavailable(_) => ProviderStatus::Unavailable,
    };
    ProviderReport {
        name: name.to_owned(),
        status,
        message: Some(error.to_string()),
        passed: 0,
        failed: 0,
        skipped: 0,
        ms: 0,
        cases: Vec::new(),
    }
}

fn succeeded(report: &ProviderReport, required: bool) -> bool {
    match report.status {
        ProviderStatus::Ran => report.failed == 0,
        ProviderStatus::Unavailable => false,
        ProviderStatus::NotConfigured => !required,
    }
}

/// Progress for one provider: a bar on a terminal, two plain lines elsewhere.
struct Progress {
    bar: Option<ProgressBar>,
    name: String,
}

impl Progress {
    fn start(name: &str, format: Format) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let bar = terminal.then(|| {
            let bar = ProgressBar::with_draw_target(Some(CASES.len() as u64), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{prefix:>16} [{bar:30}] {pos}/{len} cases, {elapsed} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(name.to_owned());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        if bar.is_none() && format == Format::Text {
            eprintln!("conformance: {name}: running {} cases …", CASES.len());
        }
        Self { bar, name: name.to_owned() }
    }

    fn observer(&self) -> runner::CaseObserver {
        let bar = self.bar.clone();
        let name = self.name.clone();
        Arc::new(move |case: &CaseReport| {
            if let Some(bar) = &bar {
                if case.status == CaseStatus::Failed {
                    bar.println(mask(
                        &format!("FAILED {name}::{}: {}", case.name, case.message.as_deref().unwrap_or("")),
                        None,
                    ));
                    bar.set_message("(failures)");
                }
                bar.inc(1);
            }
        })
    }

    fn finish(self, report: &ProviderReport) {
        let line = match report.status {
            ProviderStatus::Ran => format!(
                "{}: {} passed, {} failed, {} skipped in {:.1} s",
                report.name,
                report.passed,
                report.failed,
                report.skipped,
                report.ms as f64 / 1000.0
            ),
            _ => format!("{}: not run: {}", report.name, report.message.as_deref().unwrap_or("")),
        };
        if let Some(bar) = self.bar {
            // The bar gives way to its one-line outcome, which stays.
            bar.finish_and_clear();
        }
        eprintln!("conformance: {}", mask(&line, None));
    }
}

pub(crate) async fn run(options: Options) -> Result<Outcome, CliError> {
    let required = options.require_databases;
    let factories = select(&options.providers);
    // Open each provider once, before any suite: the stores stay open (and
    // their databases with them) until every suite is done.
    let mut probes: Vec<TestStore> = Vec::new();
    let mut reachable = Vec::new();
    let mut reports: Vec<ProviderReport> = Vec::new();
    for factory in factories {
        match factory.open().await {
            Ok(store) => {
                probes.push(store);
                reachable.push(factory);
            }
            Err(error) => reports.push(not_run(factory.name(), &error)),
        }
    }
    let unreachable: Vec<&ProviderReport> =
        reports.iter().filter(|r| r.status == ProviderStatus::Unavailable).collect();
    if !unreachable.is_empty() && !options.keep_going {
        for report in &unreachable {
            eprintln!(
                "conformance: {} is configured but does not answer: {}",
                report.name,
                mask(report.message.as_deref().unwrap_or(""), None)
            );
        }
        let names: Vec<&str> = reachable.iter().map(|f| f.name()).collect();
        if !names.is_empty() {
            eprintln!("conformance: not running {} (--keep-going runs them anyway)", names.join(", "));
        }
        reachable.clear();
    }
    for factory in reachable {
        let progress = Progress::start(factory.name(), options.format);
        let report = runner::run_suite_observed(factory, usize::from(options.parallel), progress.observer()).await;
        progress.finish(&report);
        reports.push(report);
    }
    drop(probes);
    // Suite order, whatever order they ended in.
    let order = provider_names();
    reports.sort_by_key(|r| order.iter().position(|n| n == &r.name));
    let all_passed = reports.iter().all(|r| succeeded(r, required));
    match options.format {
        Format::Text if reports.iter().any(|r| r.status == ProviderStatus::Ran) => {
            print!("{}", mask(&runner::matrix(&reports), None));
        }
        Format::Text => {
            // Nothing ran: a matrix without columns says nothing.
            for report in &reports {
                println!("{:16} {}", report.name, mask(report.message.as_deref().unwrap_or(""), None));
            }
            println!("conformance: 0 passed, 0 failed, 0 skipped");
        }
        Format::Json => println!("{}", mask(&serde_json::json!({ "providers": reports }).to_string(), None)),
        Format::Junit => {
            let xml = junit(&reports, required)
                .map_err(|e| CliError::Store { what: "writing JUnit XML".into(), cause: e })?;
            println!("{}", mask(&xml, None));
        }
    }
    if options.format != Format::Text {
        // Where a person sees it: stdout holds the machine output.
        let total = |f: fn(&ProviderReport) -> usize| reports.iter().map(f).sum::<usize>();
        eprintln!(
            "conformance: {} passed, {} failed, {} skipped",
            total(|r| r.passed),
            total(|r| r.failed),
            total(|r| r.skipped)
        );
    }
    for report in reports.iter().filter(|r| r.status == ProviderStatus::NotConfigured && required) {
        eprintln!("conformance: {} is not configured and {REQUIRE_DATABASES_ENV} is set", report.name);
    }
    Ok(if all_passed { Outcome::Clean } else { Outcome::Findings })
}

/// The reports as JUnit XML: a test suite per provider, a test case per
/// case. A provider that did not run lists every case, skipped (not
/// configured) or failed (unreachable, or not configured while databases are
/// required), so a CI system shows what was not checked.
fn junit(reports: &[ProviderReport], required: bool) -> Result<String, String> {
    let mut report = Report::new("governance conformance");
    report.set_time(Duration::from_millis(reports.iter().map(|r| r.ms).sum()));
    for provider in reports {
        let mut suite = TestSuite::new(provider.name.clone());
        suite.set_time(Duration::from_millis(provider.ms));
        if provider.status == ProviderStatus::Ran {
            for case in &provider.cases {
                let mut status = match case.status {
                    CaseStatus::Passed => TestCaseStatus::success(),
                    CaseStatus::Failed => TestCaseStatus::non_success(NonSuccessKind::Failure),
                    CaseStatus::Skipped => TestCaseStatus::skipped(),
                };
                if let Some(message) = &case.message {
                    status.set_message(message.clone());
                }
                let mut test = TestCase::new(case.name, status);
                test.set_classname(format!("{}.{}", provider.name, case.group));
                test.set_time(Duration::from_millis(case.ms));
                suite.add_test_case(test);
            }
        } else {
            let fails = !succeeded(provider, required);
            let message = provider.message.clone().unwrap_or_default();
            for case in CASES {
                let mut status =
                    if fails { TestCaseStatus::non_success(NonSuccessKind::Error) } else { TestCaseStatus::skipped() };
                status.set_message(message.clone());
                let mut test = TestCase::new(case.name, status);
                test.set_classname(format!("{}.{}", provider.name, case.group.name()));
                suite.add_test_case(test);
            }
        }
        report.add_test_suite(suite);
    }
    report.to_string().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accepted_names_are_the_providers_in_suite_order() {
        assert_eq!(provider_names(), PROVIDERS);
    }

    fn report(name: &str, status: ProviderStatus, cases: Vec<CaseReport>) -> ProviderReport {
        let count = |s| cases.iter().filter(|c: &&CaseReport| c.status == s).count();
        ProviderReport {
            name: name.into(),
            status,
            message: (status != ProviderStatus::Ran).then(|| "why".to_owned()),
            passed: count(CaseStatus::Passed),
            failed: count(CaseStatus::Failed),
            skipped: count(CaseStatus::Skipped),
            ms: 5,
            cases,
        }
    }

    #[test]
    fn junit_lists_every_case_of_every_provider() {
        let cases = CASES
            .iter()
            .enumerate()
            .map(|(i, c)| CaseReport {
                name: c.name,
                group: c.group.name(),
                status: [CaseStatus::Passed, CaseStatus::Failed, CaseStatus::Skipped][i % 3],
                ms: 1,
                message: (i % 3 != 0).then(|| "<because> & so".to_owned()),
            })
            .collect();
        let reports = [
            report("mine", ProviderStatus::Ran, cases),
            report("away", ProviderStatus::Unavailable, vec![]),
            report("absent", ProviderStatus::NotConfigured, vec![]),
        ];
        let xml = junit(&reports, false).expect("serialises");
        assert_eq!(xml.matches("<testcase ").count(), 3 * CASES.len(), "{xml}");
        assert_eq!(xml.matches("<testsuite ").count(), 3);
        assert!(xml.contains("&lt;because&gt; &amp; so"), "messages are escaped");
        assert_eq!(xml.matches("<error ").count(), CASES.len(), "the unreachable provider's cases are errors");
    }
}
