//! `governance export`: sealed history as JSON lines in the object-storage
//! layout `<dir>/workspace=<id>/year=YYYY/month=MM/day=DD/part-<index>.jsonl`.
//!
//! Without a window it is the library's `Exporter`: everything sealed, and a
//! cursor (`_cursor.json`) that the next run resumes from.
//!
//! With `--day` or `--since`/`--until` (whole UTC days: the partition is a
//! day) it exports just those days. The sealed log is read in fixed pages of
//! [`PAGE`] leaf indices, aligned on multiples of [`PAGE`], and each day of a
//! page becomes one file named after the page's first index, holding every
//! sealed record of that day in that page. So a file's name and content
//! depend only on the log, never on the window or on where a run stopped:
//! exporting a day again, or an overlapping window, rewrites the same files
//! with the same lines (a superset, for the page still filling up), and no
//! record is ever in two files. A cursor per window
//! (`_cursor.window.<since>.<until>.json`) lets the next run skip the pages
//! already done; it resumes at the start of the page it stopped in.
//!
//! The whole log is walked, not just the records near the window: a record
//! relayed late from a spool is sealed after newer ones, so its day can sit
//! anywhere in the log.

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use audit_history::{ExportLine, Exporter};
use chrono::{Datelike, NaiveDate};
use clap::Args;
use governance_abstractions::integrity::merkle_root;
use governance_abstractions::{IntegrityStore, Position, Timestamp, WorkspaceId};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::CliError;
use crate::integrity::workspace;
use crate::open::{self, Mode, Opened};
use crate::{Outcome, Output, Target};

/// Leaf indices per page of a windowed export (and at most records per file).
const PAGE: u64 = 1000;

/// `governance export`.
#[derive(Debug, Args)]
pub(crate) struct Options {
    #[command(flatten)]
    pub(crate) target: Target,
    /// The workspace (tenant) to export.
    #[arg(long, value_name = "ID")]
    workspace: String,
    /// The directory (or mounted bucket) to write into.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Only this UTC day (YYYY-MM-DD).
    #[arg(long, value_name = "DATE", conflicts_with_all = ["since", "until"])]
    day: Option<NaiveDate>,
    /// Only from this UTC day on (YYYY-MM-DD, inclusive).
    #[arg(long, value_name = "DATE")]
    since: Option<NaiveDate>,
    /// Only before this UTC day (YYYY-MM-DD, exclusive).
    #[arg(long, value_name = "DATE")]
    until: Option<NaiveDate>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    format: Output,
}

/// A window of whole days `[since, until)`; either end may be open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Window {
    since: Option<NaiveDate>,
    until: Option<NaiveDate>,
}

impl Window {
    fn contains(&self, day: NaiveDate) -> bool {
        self.since.is_none_or(|s| day >= s) && self.until.is_none_or(|u| day < u)
    }

    /// The cursor file's name for this window.
    fn cursor_name(&self) -> String {
        let end = |d: Option<NaiveDate>| d.map_or_else(|| "open".to_owned(), |d| d.to_string());
        format!("_cursor.window.{}.{}.json", end(self.since), end(self.until))
    }

    fn describe(&self) -> String {
        match (self.since, self.until) {
            (Some(s), Some(u)) if s.succ_opt() == Some(u) => format!("on {s}"),
            (Some(s), Some(u)) => format!("from {s} until (before) {u}"),
            (Some(s), None) => format!("from {s} on"),
            (None, Some(u)) => format!("before {u}"),
            (None, None) => "at any time".to_owned(),
        }
    }
}

/// Where a windowed export resumes.
#[derive(Debug, Serialize, Deserialize)]
struct WindowCursor {
    workspace_id: WorkspaceId,
    /// The first leaf index not exported yet.
    next_index: u64,
}

/// What one export wrote.
#[derive(Debug, Default)]
struct Written {
    records: u64,
    files: Vec<PathBuf>,
    /// Records of the window that earlier runs had exported (rewritten
    /// unchanged in the page a run resumes in).
    again: u64,
    /// The leaf index the run started from (0: the first run).
    resumed_from: u64,
}

pub(crate) async fn run(options: Options) -> Result<Outcome, CliError> {
    let workspace = workspace(&options.workspace)?;
    let window = match options.day {
        Some(day) => Some(Window { since: Some(day), until: day.succ_opt() }),
        None if options.since.is_some() || options.until.is_some() => {
            Some(Window { since: options.since, until: options.until })
        }
        None => None,
    };
    if let Some(Window { since: Some(s), until: Some(u) }) = window
        && u <= s
    {
        return Err(CliError::Usage(format!("--until {u} must come after --since {s}")));
    }
    let opened = open::open(&options.target, Mode::Existing).await?;
    let store = opened.store();
    let exporter = Exporter::new(store.clone(), &options.dir);
    let root = exporter.workspace_dir(&workspace);
    let written = match window {
        None => {
            if has_window_cursors(&root) {
                return Err(mixed(&root, "windowed exports", "a full export"));
            }
            let before = exporter.cursor(&workspace).map_err(|e| opened.failed("reading the export cursor", &e))?;
            let report =
                exporter.export(&workspace).await.map_err(|e| opened.failed(&format!("exporting {workspace}"), &e))?;
            Written { records: report.records, files: report.files, again: 0, resumed_from: before.next_index }
        }
        Some(window) => {
            if root.join("_cursor.json").exists() {
                return Err(mixed(&root, "a full export", "a windowed export"));
            }
            export_window(&opened, store.as_ref(), &workspace, &root, window).await?
        }
    };
    let why_none =
        if written.records == 0 { Some(why_none(&opened, &workspace, window, &written).await?) } else { None };
    let scope = window.map_or_else(|| "every sealed record".to_owned(), |w| format!("sealed records {}", w.describe()));
    match options.format {
        Output::Json => println!(
            "{}",
            json!({
                "workspace": workspace,
                "window": window.map(|w| json!({"since": w.since, "until": w.until})),
                "records": written.records,
                "files": written.files,
                "already_exported": written.again,
                "why_none": why_none,
            })
        ),
        Output::Text => {
            println!(
                "exported {} records ({scope}) of workspace {workspace} into {} files under {}",
                written.records,
                written.files.len(),
                root.display()
            );
            if let Some(why) = why_none {
                println!("none written: {why}");
            }
        }
    }
    Ok(Outcome::Clean)
}

fn mixed(root: &Path, found: &str, asked: &str) -> CliError {
    CliError::Usage(format!(
        "{} holds {found}; {asked} into the same directory would put records in two files: use another --dir",
        root.display()
    ))
}

fn has_window_cursors(root: &Path) -> bool {
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| entry.file_name().to_str().is_some_and(|name| name.starts_with("_cursor.window.")))
}

fn day_of(at: Timestamp) -> NaiveDate {
    at.as_datetime().date_naive()
}

async fn export_window(
    opened: &Opened,
    store: &dyn IntegrityStore,
    workspace: &WorkspaceId,
    root: &Path,
    window: Window,
) -> Result<Written, CliError> {
    let cursor_path = root.join(window.cursor_name());
    let exported_before = match std::fs::read(&cursor_path) {
        Ok(bytes) => {
            let cursor: WindowCursor = serde_json::from_slice(&bytes)
                .map_err(|e| CliError::Io { path: cursor_path.clone(), cause: e.to_string() })?;
            if &cursor.workspace_id != workspace {
                return Err(CliError::Usage(format!(
                    "{} belongs to workspace {}",
                    cursor_path.display(),
                    cursor.workspace_id
                )));
            }
            cursor.next_index
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(CliError::Io { path: cursor_path, cause: e.to_string() }),
    };
    let mut written = Written { resumed_from: exported_before, ..Written::default() };
    let mut sound: HashSet<u64> = HashSet::new();
    let mut page_start = exported_before - exported_before % PAGE;
    loop {
        let page = store
            .sealed_records(workspace, page_start, PAGE as u32)
            .await
            .map_err(|e| opened.failed("reading sealed records", &e))?;
        let Some((last, _)) = page.last() else { break };
        let next_index = last.index + 1;
        let mut days: BTreeMap<NaiveDate, Vec<u8>> = BTreeMap::new();
        let mut checkpoints = Vec::new();
        for ((entry, record), expected) in page.into_iter().zip(page_start..) {
            if entry.index != expected {
                return Err(CliError::Store {
                    what: format!("exporting {workspace}"),
                    cause: format!("leaf {expected} is missing from the sealed log (run `governance verify`)"),
                });
            }
            let record = match record {
                Some(Ok(record))
                    if record.content_hash() == entry.content_hash
                        && record.workspace_id() == workspace
                        && record.check().is_ok() =>
                {
                    record
                }
                Some(Ok(record)) if !window.contains(day_of(record.created_at())) => continue,
                _ => return Err(tampered(workspace, entry.record_id, entry.index)),
            };
            let day = day_of(record.created_at());
            if !window.contains(day) {
                continue;
            }
            checkpoints.push((entry.checkpoint, entry.record_id, entry.index));
            if entry.index >= exported_before {
                written.records += 1;
            } else {
                written.again += 1;
            }
            let line = ExportLine { index: entry.index, checkpoint: entry.checkpoint, record };
            let bytes = days.entry(day).or_default();
            serde_json::to_writer(&mut *bytes, &line)
                .map_err(|e| CliError::Io { path: root.into(), cause: e.to_string() })?;
            bytes.push(b'\n');
        }
        for (seq, record, index) in checkpoints {
            if sound.insert(seq) && !checkpoint_is_sound(opened, store, workspace, seq).await? {
                // A record rewritten with its seal entry still matches the
                // entry: only the checkpoint's root tells.
                return Err(tampered(workspace, record, index));
            }
        }
        let name = format!("part-{page_start:020}.jsonl");
        for (day, bytes) in days {
            let dir = root
                .join(format!("year={:04}", day.year()))
                .join(format!("month={:02}", day.month()))
                .join(format!("day={:02}", day.day()));
            write_atomically(&dir, &name, &bytes)?;
            written.files.push(dir.join(&name));
        }
        let cursor = WindowCursor { workspace_id: workspace.clone(), next_index };
        let bytes =
            serde_json::to_vec(&cursor).map_err(|e| CliError::Io { path: root.into(), cause: e.to_string() })?;
        write_atomically(root, &window.cursor_name(), &bytes)?;
        if next_index - page_start < PAGE {
            break;
        }
        page_start += PAGE;
    }
    Ok(written)
}

fn tampered(workspace: &WorkspaceId, record: governance_abstractions::RecordId, index: u64) -> CliError {
    CliError::Store {
        what: format!("exporting {workspace}"),
        cause: format!(
            "record {record} (leaf {index}) does not match what was sealed; nothing tampered is exported (run `governance verify`)"
        ),
    }
}

/// True when checkpoint `seq` matches its digest and its entries make its root.
async fn checkpoint_is_sound(
    opened: &Opened,
    store: &dyn IntegrityStore,
    workspace: &WorkspaceId,
    seq: u64,
) -> Result<bool, CliError> {
    let found = store
        .checkpoints(workspace, seq.saturating_sub(1), 1)
        .await
        .map_err(|e| opened.failed("reading checkpoints", &e))?;
    let Some(checkpoint) = found.into_iter().next().filter(|c| c.seq() == seq) else { return Ok(false) };
    if checkpoint.compute_digest().ok().as_deref() != Some(checkpoint.digest()) {
        return Ok(false);
    }
    let count = u32::try_from(checkpoint.record_count()).unwrap_or(u32::MAX);
    let entries = store
        .sealed_records(workspace, checkpoint.first_index(), count)
        .await
        .map_err(|e| opened.failed("reading sealed records", &e))?;
    let leaves: Vec<[u8; 32]> = entries.iter().map(|(entry, _)| entry.leaf_hash()).collect();
    Ok(leaves.len() as u64 == checkpoint.record_count()
        && entries.iter().all(|(entry, _)| entry.checkpoint == seq)
        && merkle_root(&leaves) == checkpoint.root())
}

/// Writes `dir/name` through a temporary file, synced and renamed, so a
/// reader never sees half a file and a crash leaves the old one or the new.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), CliError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |e: std::io::Error| CliError::Io { path, cause: e.to_string() }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let target = dir.join(name);
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut file = std::fs::File::create(&temporary).map_err(io(&temporary))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(io(&temporary))?;
    std::fs::rename(&temporary, &target).map_err(io(&target))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Why an export wrote nothing, in words.
async fn why_none(
    opened: &Opened,
    workspace: &WorkspaceId,
    window: Option<Window>,
    written: &Written,
) -> Result<String, CliError> {
    let store = opened.store();
    let window = window.unwrap_or(Window { since: None, until: None });
    // Unsealed records in the window: the usual reason.
    let mut unsealed = 0u64;
    let mut after: Option<Position> = None;
    loop {
        let page = store
            .unsealed_history(workspace, after, 500)
            .await
            .map_err(|e| opened.failed("reading unsealed history", &e))?;
        let full = page.len() == 500;
        after = page.last().map(governance_abstractions::integrity::position_of);
        unsealed += page
            .iter()
            .filter(|row| match row {
                Ok(record) => window.contains(day_of(record.created_at())),
                Err(unreadable) => window.contains(day_of(unreadable.created_at)),
            })
            .count() as u64;
        if !full {
            break;
        }
    }
    let sealed_any = !store
        .sealed_records(workspace, 0, 1)
        .await
        .map_err(|e| opened.failed("reading sealed records", &e))?
        .is_empty();
    let window = window.describe();
    Ok(match unsealed {
        0 if !sealed_any => format!("workspace {workspace} has no sealed records"),
        0 if written.resumed_from > 0 => format!(
            "nothing new {window}: earlier runs exported the sealed log up to leaf {}{}",
            written.resumed_from,
            if written.again > 0 {
                format!(" (the {} records here were rewritten unchanged)", written.again)
            } else {
                String::new()
            }
        ),
        0 => format!("no sealed records {window}"),
        n => format!("{n} records {window} are not sealed yet: run `governance seal` first"),
    })
}
