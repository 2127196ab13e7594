//! The `governance` command.
//!
//! ```text
//! governance conformance [--provider NAME]... [--format text|json] [--parallel N]
//! ```
//!
//! `conformance` runs the suite against every provider it can reach
//! (embedded ones first) and prints a provider × case matrix, or one JSON
//! object. It exits 1 when a case fails or a configured provider is
//! unreachable (or, with `GOVERNANCE_REQUIRE_DATABASES=1`, not configured),
//! 2 on bad arguments.

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use conformance_tests::StoreFactory;
use conformance_tests::runner::{self, ProviderReport, ProviderStatus};
use governance_test_support::{MYSQL_URL_ENV, POSTGRES_URL_ENV, REQUIRE_DATABASES_ENV};

/// Durable governance persistence: operator commands.
#[derive(Debug, Parser)]
#[command(name = "governance", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the conformance suite against every provider it can reach.
    #[command(after_help = format!(
        "Providers: {}.\n\nEnvironment:\n  {POSTGRES_URL_ENV}  PostgreSQL server (each run creates its own database)\n  \
         {MYSQL_URL_ENV}  MySQL/MariaDB server\n  {REQUIRE_DATABASES_ENV}=1  a server that is not configured fails the run",
        providers().iter().map(|f| f.name().to_owned()).collect::<Vec<_>>().join(", ")
    ))]
    Conformance {
        /// Only this provider (repeatable).
        #[arg(long = "provider", value_name = "NAME")]
        providers: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Cases run at once per provider.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
        parallel: u16,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    /// A provider × case matrix and a summary.
    Text,
    /// One JSON object: `{"providers": [...]}`.
    Json,
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

fn select(names: &[String]) -> Result<Vec<Arc<dyn StoreFactory>>, String> {
    let all = providers();
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

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let Command::Conformance { providers, format, parallel } = cli.command;
    let factories = match select(&providers) {
        Ok(factories) => factories,
        Err(message) => {
            eprintln!("governance conformance: {message}");
            return ExitCode::from(2);
        }
    };
    let mut reports = Vec::new();
    for factory in factories {
        if format == Format::Text {
            eprintln!("conformance: running {} …", factory.name());
        }
        reports.push(runner::run_suite(factory, usize::from(parallel)).await);
    }
    match format {
        Format::Json => println!("{}", serde_json::json!({ "providers": reports })),
        Format::Text => print!("{}", runner::matrix(&reports)),
    }
    if reports.iter().all(succeeded) { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
