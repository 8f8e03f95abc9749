//! Errors a command ends with, their exit codes, and how they are printed.

use std::path::PathBuf;

/// Exit code: success, everything allowed.
pub const EXIT_OK: u8 = 0;
/// Exit code: something was denied (check, replay), or the server failed at run time.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code: usage, input or configuration error.
pub const EXIT_USAGE: u8 = 2;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flag combination that cannot work.
    #[error("{0}")]
    Usage(String),
    /// A file could not be read or written.
    #[error("{action} {}: {source}", path.display())]
    File {
        /// `reading` or `writing`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The configuration file is invalid.
    #[error("{}: {source}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong and where.
        #[source]
        source: kadmit_core::config::ConfigError,
    },
    /// The cluster snapshot is invalid.
    #[error("{}: {source}", path.display())]
    Snapshot {
        /// The file.
        path: PathBuf,
        /// What is wrong and where.
        #[source]
        source: kadmit_core::cluster::SnapshotError,
    },
    /// Certificates or keys cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::server::tls::TlsError),
    /// Certificates could not be generated.
    #[error(transparent)]
    Certs(#[from] crate::certs::CertsError),
    /// The API server cannot be reached or configured.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::live::LiveClusterError),
    /// The server failed.
    #[error(transparent)]
    Server(#[from] crate::server::ServerError),
    /// The async runtime could not start.
    #[error("starting the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_)
            | CliError::Config { .. }
            | CliError::Snapshot { .. }
            | CliError::Tls(_)
            | CliError::File {
                action: "reading", ..
            } => EXIT_USAGE,
            CliError::File { .. }
            | CliError::Certs(_)
            | CliError::Cluster(_)
            | CliError::Server(_)
            | CliError::Runtime(_) => EXIT_FAILURE,
        }
    }

    /// Prints the error and its causes to stderr, one per line.
    pub fn print(&self) {
        eprintln!("error: {self}");
        let mut source = std::error::Error::source(self);
        // Messages that already embed their cause (`{source}`) would repeat it; print a cause
        // only when the text so far does not contain it.
        let mut printed = self.to_string();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !printed.contains(&text) {
                eprintln!("  caused by: {text}");
                printed.push_str(&text);
            }
            source = cause.source();
        }
    }
}
