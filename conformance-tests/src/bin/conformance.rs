//! Runs the conformance suite against every provider it can reach and prints
//! a provider × case matrix.
//!
//! ```text
//! conformance [--provider NAME]... [--format text|json] [--parallel N]
//! ```
//!
//! Exits 1 when a case fails or a configured provider is unreachable (or, with
//! `GOVERNANCE_REQUIRE_DATABASES=1`, not configured), 2 on bad arguments.

use std::process::ExitCode;
use std::sync::Arc;

use conformance_tests::runner::{self, CaseStatus, ProviderReport, ProviderStatus};
use conformance_tests::{CASES, StoreFactory, providers};

const USAGE: &str = "usage: conformance [--provider NAME]... [--format text|json] [--parallel N]";

struct Args {
    providers: Vec<String>,
    json: bool,
    parallel: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { providers: Vec::new(), json: false, parallel: 8 };
    let mut argv = std::env::args().skip(1);
    while let Some(arg) = argv.next() {
        let mut value = || argv.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--provider" => args.providers.push(value()?),
            "--format" => {
                args.json = match value()?.as_str() {
                    "json" => true,
                    "text" => false,
                    other => return Err(format!("unknown format {other:?}")),
                }
            }
            "--parallel" => args.parallel = value()?.parse().map_err(|_| "--parallel needs a number".to_owned())?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn select(names: &[String]) -> Result<Vec<Arc<dyn StoreFactory>>, String> {
    let all = providers::all();
    if names.is_empty() {
        return Ok(all);
    }
    names
        .iter()
        .map(|name| {
            all.iter().find(|f| f.name() == name).cloned().ok_or_else(|| {
                let known: Vec<&str> = all.iter().map(|f| f.name()).collect();
                format!("unknown provider {name:?}; known: {}", known.join(", "))
            })
        })
        .collect()
}

fn succeeded(report: &ProviderReport) -> bool {
    match report.status {
        ProviderStatus::Ran => report.failed == 0,
        ProviderStatus::Unavailable => false,
        ProviderStatus::NotConfigured => !runner::databases_required(),
    }
}

fn print_text(reports: &[ProviderReport]) {
    let ran: Vec<&ProviderReport> = reports.iter().filter(|r| r.status == ProviderStatus::Ran).collect();
    let width = CASES.iter().map(|c| c.name.len()).max().unwrap_or(4);
    let mut header = format!("{:width$}  {:20}", "case", "group");
    for report in &ran {
        header.push_str(&format!("  {:>14}", report.name));
    }
    println!("{header}");
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
        println!("{line}");
    }
    println!();
    for report in reports {
        for case in report.cases.iter().filter(|c| c.status != CaseStatus::Passed) {
            let message = case.message.as_deref().unwrap_or("");
            println!(
                "{} {}::{}: {message}",
                if case.status == CaseStatus::Failed { "FAILED" } else { "skipped" },
                report.name,
                case.name
            );
        }
    }
    println!();
    for report in reports {
        let status = match report.status {
            ProviderStatus::Ran => "ran",
            ProviderStatus::NotConfigured => "not-configured",
            ProviderStatus::Unavailable => "unavailable",
        };
        let why = report.message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default();
        println!(
            "{:16} {status:15} {} passed, {} failed, {} skipped{why}",
            report.name, report.passed, report.failed, report.skipped
        );
    }
    let total = |f: fn(&ProviderReport) -> usize| reports.iter().map(f).sum::<usize>();
    println!(
        "conformance: {} passed, {} failed, {} skipped",
        total(|r| r.passed),
        total(|r| r.failed),
        total(|r| r.skipped)
    );
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("conformance: {message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let factories = match select(&args.providers) {
        Ok(factories) => factories,
        Err(message) => {
            eprintln!("conformance: {message}");
            return ExitCode::from(2);
        }
    };
    let mut reports = Vec::new();
    for factory in factories {
        if !args.json {
            eprintln!("conformance: running {} …", factory.name());
        }
        reports.push(runner::run_suite(factory, args.parallel).await);
    }
    if args.json {
        let document = serde_json::json!({ "providers": reports });
        println!("{document}");
    } else {
        print_text(&reports);
    }
    if reports.iter().all(succeeded) { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
