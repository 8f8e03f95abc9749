//! The `tracing` subscriber: text for people, JSON for log pipelines.
//!
//! Either way one event is one line, whatever a client put in the fields (see
//! [`super::fields`]).

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

use super::fields::OneLineFields;

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with span fields (such as the request uid) on every line.
    Json,
}

/// Installs the global subscriber, writing to stderr (stdout is for command output).
///
/// `level` is an `EnvFilter` directive such as `info` or `kadmit=debug,kube=warn`; `RUST_LOG`
/// overrides it when set.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests running several commands in one process) keeps the first.
    let _ = match format {
        // The JSON format escapes every string itself; the text format needs `OneLineFields`.
        LogFormat::Text => builder
            .fmt_fields(OneLineFields)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}
