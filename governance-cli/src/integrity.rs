//! `governance seal` and `governance verify`.

use std::path::PathBuf;

use audit_history::{Problem, Sealer};
use clap::Args;
use governance_abstractions::{Anchor, WorkspaceId};
use serde_json::json;

use crate::error::CliError;
use crate::open::{self, Mode};
use crate::{Outcome, Output, Target};

/// `governance seal`.
#[derive(Debug, Args)]
pub(crate) struct SealOptions {
    #[command(flatten)]
    pub(crate) target: Target,
    /// The workspace (tenant) to seal.
    #[arg(long, value_name = "ID")]
    workspace: String,
    /// Also write the new anchor (the latest checkpoint's identity) here, to
    /// keep outside the database and pass to `verify --anchor`.
    #[arg(long, value_name = "FILE")]
    anchor_out: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    format: Output,
}

/// `governance verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyOptions {
    #[command(flatten)]
    pub(crate) target: Target,
    /// The workspace (tenant) to verify.
    #[arg(long, value_name = "ID")]
    workspace: String,
    /// An anchor kept outside the database (a file, or the JSON itself, as
    /// `seal` prints it): detects a cut or rewritten tail.
    #[arg(long, value_name = "FILE|JSON")]
    anchor: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    format: Output,
}

pub(crate) fn workspace(id: &str) -> Result<WorkspaceId, CliError> {
    WorkspaceId::new(id).map_err(|e| CliError::Usage(format!("--workspace {id:?}: {e}")))
}

pub(crate) async fn seal(options: SealOptions) -> Result<Outcome, CliError> {
    let workspace = workspace(&options.workspace)?;
    let opened = open::open(&options.target, Mode::Existing).await?;
    let report = Sealer::new(opened.store())
        .seal(&workspace)
        .await
        .map_err(|e| opened.failed(&format!("sealing workspace {workspace}"), &e))?;
    // With no new checkpoint the anchor to keep is still the latest one.
    let anchor = match report.anchor() {
        Some(anchor) => Some(anchor),
        None => opened
            .store()
            .latest_checkpoint(&workspace)
            .await
            .map_err(|e| opened.failed("reading the latest checkpoint", &e))?
            .map(|c| c.anchor()),
    };
    if let (Some(path), Some(anchor)) = (&options.anchor_out, &anchor) {
        let text = serde_json::to_string_pretty(anchor).unwrap_or_default();
        std::fs::write(path, text + "\n").map_err(|e| CliError::Io { path: path.clone(), cause: e.to_string() })?;
    }
    let tampered: Vec<String> = report.tampered.iter().map(ToString::to_string).collect();
    match options.format {
        Output::Json => println!(
            "{}",
            json!({
                "workspace": workspace,
                "records": report.records,
                "checkpoints": report.checkpoints.iter().map(|c| c.seq()).collect::<Vec<_>>(),
                "tampered": tampered,
                "anchor": anchor,
            })
        ),
        Output::Text => {
            match (report.checkpoints.first(), report.checkpoints.last()) {
                (Some(first), Some(last)) => println!(
                    "sealed {} records of workspace {workspace} in checkpoints {}..={}",
                    report.records,
                    first.seq(),
                    last.seq()
                ),
                _ => println!("nothing to seal in workspace {workspace}: every readable record is sealed"),
            }
            for id in &tampered {
                println!("NOT SEALED: record {id} does not match its hash (run `governance verify`)");
            }
            if let Some(anchor) = &anchor {
                println!("anchor: {}", serde_json::to_string(anchor).unwrap_or_default());
            }
        }
    }
    Ok(if tampered.is_empty() { Outcome::Clean } else { Outcome::Findings })
}

fn read_anchor(value: &str, workspace: &WorkspaceId) -> Result<Anchor, CliError> {
    let text = if value.trim_start().starts_with('{') { value.to_owned() } else { crate::read_file(&value.into())? };
    let anchor: Anchor =
        serde_json::from_str(&text).map_err(|e| CliError::Usage(format!("--anchor is not an anchor: {e}")))?;
    if &anchor.workspace_id != workspace {
        return Err(CliError::Usage(format!("--anchor belongs to workspace {}, not {workspace}", anchor.workspace_id)));
    }
    Ok(anchor)
}

/// A problem as JSON: its kind, the ids it names and its sentence.
fn problem_json(problem: &Problem) -> serde_json::Value {
    let (kind, record, index, seq) = match problem {
        Problem::RecordAltered { record, index } => ("record-altered", Some(*record), *index, None),
        Problem::RecordUnreadable { record, index, .. } => ("record-unreadable", Some(*record), *index, None),
        Problem::RecordMissing { record, index, checkpoint } => {
            ("record-missing", Some(*record), Some(*index), Some(*checkpoint))
        }
        Problem::CheckpointAltered { seq } => ("checkpoint-altered", None, None, Some(*seq)),
        Problem::CheckpointMissing { seq } => ("checkpoint-missing", None, None, Some(*seq)),
        Problem::ChainBroken { seq } => ("chain-broken", None, None, Some(*seq)),
        Problem::SealEntryAltered { index, record, checkpoint } => {
            ("seal-entry-altered", Some(*record), Some(*index), Some(*checkpoint))
        }
        Problem::SealBroken { seq } => ("seal-broken", None, None, Some(*seq)),
        Problem::AnchorMismatch { seq } => ("anchor-mismatch", None, None, Some(*seq)),
        _ => ("other", None, None, None),
    };
    json!({
        "kind": kind,
        "record": record.map(|r| r.to_string()),
        "index": index,
        "checkpoint": seq,
        "message": problem.to_string(),
    })
}

pub(crate) async fn verify(options: VerifyOptions) -> Result<Outcome, CliError> {
    let workspace = workspace(&options.workspace)?;
    let anchor = options.anchor.as_deref().map(|a| read_anchor(a, &workspace)).transpose()?;
    let opened = open::open(&options.target, Mode::Existing).await?;
    let store = opened.store();
    let report = audit_history::verify(store.as_ref(), &workspace, anchor.as_ref())
        .await
        .map_err(|e| opened.failed(&format!("verifying workspace {workspace}"), &e))?;
    match options.format {
        Output::Json => println!(
            "{}",
            json!({
                "workspace": workspace,
                "clean": report.is_clean(),
                "checkpoints": report.checkpoints,
                "sealed": report.sealed,
                "unsealed": report.unsealed,
                "anchored": anchor.is_some(),
                "latest": report.latest,
                "problem": report.problem.as_ref().map(problem_json),
            })
        ),
        Output::Text => match &report.problem {
            None => println!(
                "workspace {workspace}: clean: {} checkpoints, {} sealed records, {} unsealed records{}",
                report.checkpoints,
                report.sealed,
                report.unsealed,
                if anchor.is_some() { ", the anchor matches" } else { " (no anchor: a cut tail would not show)" }
            ),
            Some(problem) => {
                println!("workspace {workspace}: PROBLEM: {problem}");
                println!(
                    "checked before it: {} checkpoints, {} sealed records, {} unsealed records",
                    report.checkpoints, report.sealed, report.unsealed
                );
            }
        },
    }
    Ok(if report.is_clean() { Outcome::Clean } else { Outcome::Findings })
}
