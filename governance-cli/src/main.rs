//! The `governance` command.
//!
//! ```text
//! governance conformance [--provider NAME]... [--format text|json|junit] [--parallel N] [--keep-going]
//! governance migrate     --url URL [--provider postgres|seaorm]
//! governance seal        --url URL --workspace ID [--anchor-out FILE] [--format text|json]
//! governance verify      --url URL --workspace ID [--anchor FILE|JSON] [--format text|json]
//! governance export      --url URL --workspace ID --dir DIR [--day DATE | --since DATE --until DATE]
//! governance stats       --url URL --workspace ID [--since T] [--until T] [--limit N] [--format table|json]
//! ```
//!
//! `conformance` runs the suite against every provider it can reach
//! (embedded ones first). The other commands work on one database named by
//! `--url` or `GOVERNANCE_URL`: `postgres://` opens the sqlx provider (or
//! SeaORM with `--provider seaorm`), `mysql://` SeaORM on MySQL/MariaDB,
//! `sqlite:` SeaORM on SQLite.
//!
//! Exit codes: 0 done (and clean), 1 something was found wrong (a failed
//! case, an unreachable provider, a verification problem, a tampered
//! record), 2 bad arguments, 3 the command could not do its work (the
//! database does not answer, the store refused, a file could not be
//! written). No output shows a password: every URL is shown masked.

mod conformance;
mod error;
mod export;
mod integrity;
mod open;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use governance_test_support::{MYSQL_URL_ENV, POSTGRES_URL_ENV, REQUIRE_DATABASES_ENV};

use crate::error::CliError;

/// The variable the database commands read their URL from.
const URL_ENV: &str = "GOVERNANCE_URL";

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
         {MYSQL_URL_ENV}  MySQL/MariaDB server\n  {REQUIRE_DATABASES_ENV}=1  a server that is not configured fails the run\n\n\
         Exit status: 0 every case passed; 1 a case failed or a configured provider did not answer.",
        conformance::provider_names().join(", ")
    ))]
    Conformance(conformance::Options),
    /// Apply the schema migrations (as the tables' owner).
    Migrate(Target),
    /// Seal the workspace's unsealed history into checkpoints.
    Seal(integrity::SealOptions),
    /// Check every checkpoint, seal and record of a workspace.
    #[command(after_help = "Exit status: 0 clean; 1 a problem was found (it is named); 3 the check could not run.")]
    Verify(integrity::VerifyOptions),
    /// Export sealed history as JSON lines partitioned by day.
    Export(export::Options),
    /// Decision counts over a window: top deny reasons, per principal, operation and decision.
    Stats(stats::Options),
    /// Fold new decision records into the hourly and daily counts that stats reads (PostgreSQL).
    #[command(name = "roll-up")]
    RollUp(stats::RollUpOptions),
}

/// The database a command works on.
#[derive(Clone, Debug, Args)]
struct Target {
    /// The database: postgres://…, mysql://…, sqlite:PATH.
    #[arg(long, env = URL_ENV, hide_env_values = true, value_name = "URL")]
    url: String,
    /// Which provider opens a postgres:// URL (mysql:// and sqlite: are SeaORM's).
    #[arg(long, value_enum)]
    provider: Option<UrlProvider>,
}

/// The provider that opens a URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum UrlProvider {
    /// governance-postgres (sqlx): PostgreSQL only.
    Postgres,
    /// governance-seaorm: PostgreSQL, MySQL/MariaDB, SQLite.
    Seaorm,
}

/// How a database command prints its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    /// Lines for people.
    Text,
    /// One JSON object.
    Json,
}

/// What a command ended with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Done, nothing wrong.
    Clean,
    /// Done, and something was found wrong (exit 1).
    Findings,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let url = match &cli.command {
        Command::Conformance(_) => None,
        Command::Migrate(target) => Some(target.url.clone()),
        Command::Seal(o) => Some(o.target.url.clone()),
        Command::Verify(o) => Some(o.target.url.clone()),
        Command::Export(o) => Some(o.target.url.clone()),
        Command::Stats(o) => Some(o.target.url.clone()),
        Command::RollUp(o) => Some(o.target.url.clone()),
    };
    let command = async {
        match cli.command {
            Command::Conformance(options) => conformance::run(options).await,
            Command::Migrate(target) => migrate(target).await,
            Command::Seal(options) => integrity::seal(options).await,
            Command::Verify(options) => integrity::verify(options).await,
            Command::Export(options) => export::run(options).await,
            Command::Stats(options) => stats::run(options).await,
            Command::RollUp(options) => stats::roll_up(options).await,
        }
    };
    let outcome = tokio::select! {
        outcome = command => outcome,
        // Interrupted: what the command held is released as it is dropped
        // here, and its test databases go below, before the process ends.
        _ = tokio::signal::ctrl_c() => {
            governance_test_support::drop_created_databases().await;
            eprintln!("governance: interrupted");
            return ExitCode::from(130);
        }
    };
    // Test databases the suite created on a server go now, not with a
    // later run's sweep.
    governance_test_support::drop_created_databases().await;
    match outcome {
        Ok(Outcome::Clean) => ExitCode::SUCCESS,
        Ok(Outcome::Findings) => ExitCode::from(1),
        Err(error) => {
            let message = error::mask(&error.to_string(), url.as_deref());
            eprintln!("governance: {message}");
            ExitCode::from(error.exit_code())
        }
    }
}

async fn migrate(target: Target) -> Result<Outcome, CliError> {
    let opened = open::open(&target, open::Mode::Migrate).await?;
    opened.migrate().await?;
    println!("migrated {} ({})", opened.shown_url(), opened.provider());
    Ok(Outcome::Clean)
}

/// Reads a file argument, naming it when it cannot.
fn read_file(path: &PathBuf) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|e| CliError::Io { path: path.clone(), cause: e.to_string() })
}
