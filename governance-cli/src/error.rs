//! What can stop a command, and how it is shown (never with a password).

use std::path::PathBuf;

use governance_test_support::{MYSQL_URL_ENV, POSTGRES_URL_ENV, scrubbed};

/// Why a command could not do its work.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// The arguments do not make sense together (exit 2, like clap's own).
    #[error("{0}")]
    Usage(String),
    /// The database did not answer, or refused the login.
    #[error("cannot reach {url}: {cause}")]
    Unreachable {
        /// The URL, masked.
        url: String,
        /// The driver's reason.
        cause: String,
    },
    /// The store answered with an error.
    #[error("{what}: {cause}")]
    Store {
        /// What was being done.
        what: String,
        /// The error with its causes.
        cause: String,
    },
    /// A file could not be read or written.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The reason.
        cause: String,
    },
}

impl CliError {
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Unreachable { .. } | CliError::Store { .. } | CliError::Io { .. } => 3,
        }
    }

    /// A store error while doing `what`.
    pub(crate) fn store(what: impl Into<String>, error: &dyn std::error::Error) -> Self {
        CliError::Store { what: what.into(), cause: causes(error) }
    }
}

impl From<governance_abstractions::GovernanceError> for CliError {
    fn from(error: governance_abstractions::GovernanceError) -> Self {
        CliError::store("the store failed", &error)
    }
}

/// `error` with its chain of causes, each once.
pub(crate) fn causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(&format!(": {text}"));
        }
        source = cause.source();
    }
    message
}

/// `text` without the password of `url` nor of the server URLs in the
/// environment: the last guard before anything is printed.
pub(crate) fn mask(text: &str, url: Option<&str>) -> String {
    let mut out = text.to_owned();
    let from_env = [POSTGRES_URL_ENV, MYSQL_URL_ENV, crate::URL_ENV].map(|v| std::env::var(v).ok());
    for url in url.map(str::to_owned).into_iter().chain(from_env.into_iter().flatten()) {
        if !url.is_empty() {
            out = scrubbed(&out, &url);
        }
    }
    out
}
