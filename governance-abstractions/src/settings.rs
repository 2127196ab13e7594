//! How a server-backed provider opens its connection pool.

use std::time::Duration;

/// Pool size, timeouts and the name a server shows for the connections, for
/// the SQL providers' `connect_with`. The defaults suit an application that
/// should learn of an unreachable server within seconds, not wait out a
/// driver's 30 s.
///
/// ```
/// use std::time::Duration;
/// use governance_abstractions::ConnectionSettings;
///
/// let settings = ConnectionSettings::default()
///     .with_max_connections(32)
///     .with_connect_timeout(Duration::from_secs(2))
///     .with_application_name("billing");
/// assert_eq!(settings.max_connections(), 32);
/// assert_eq!(settings.application_name(), Some("billing"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionSettings {
    max_connections: u32,
    connect_timeout: Duration,
    acquire_timeout: Duration,
    application_name: Option<String>,
}

impl ConnectionSettings {
    /// Connections in the pool by default.
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;
    /// How long opening one connection may take by default (refused,
    /// unreachable or silent servers fail within it, with their cause).
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// How long a call waits for a pooled connection by default (a failover
    /// in progress, or a pool too small for the load).
    pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

    /// At most `n` pooled connections (at least 1).
    pub fn with_max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// How long opening one connection may take.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a call waits for a pooled connection.
    pub fn with_acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// The name the server shows for these connections (PostgreSQL's
    /// `application_name`; ignored where the backend has none).
    pub fn with_application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = Some(name.into());
        self
    }

    /// The pool size.
    pub fn max_connections(&self) -> u32 {
        self.max_connections
    }

    /// The connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The acquire timeout.
    pub fn acquire_timeout(&self) -> Duration {
        self.acquire_timeout
    }

    /// The application name, if set.
    pub fn application_name(&self) -> Option<&str> {
        self.application_name.as_deref()
    }
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        Self {
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            acquire_timeout: Self::DEFAULT_ACQUIRE_TIMEOUT,
            application_name: None,
        }
    }
}
