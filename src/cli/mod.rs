//! The command line: `kadmit serve`, `kadmit check`, `kadmit replay`, `kadmit bench` and
//! `kadmit certs`.

pub mod bench;
pub mod certs;
pub mod check;
mod inputs;
pub mod replay;
pub mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::{CliError, EXIT_OK};
use crate::telemetry::logging::{self, LogFormat};

/// A Kubernetes admission webhook: Pod Security Standards, GMSA and pod defaulting, served over
/// HTTPS to the API server and runnable offline with the same code.
#[derive(Debug, Parser)]
// `--version` is the top-level flag only: `kadmit check --version v1.30` is a Pod Security version.
#[command(name = "kadmit", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "KADMIT_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// Log filter, such as `info` or `kadmit=debug,kube=warn` (RUST_LOG overrides it).
    #[arg(long, global = true, default_value = "info", env = "KADMIT_LOG_LEVEL")]
    pub log_level: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTPS admission webhook (POST /mutate, POST /validate).
    Serve(Box<serve::ServeArgs>),
    /// Check manifests (Pods and pod-template workloads) against a Pod Security level, offline.
    Check(check::CheckArgs),
    /// Replay AdmissionReviews (captured by `serve`, pasted, or made from manifests) through
    /// the policies offline, and with --diff compare with the answers given at the time.
    Replay(Box<replay::ReplayArgs>),
    /// Measure the policies on reviews (as `replay` reads them), in-process: p50/p95/p99 per
    /// policy and endpoint, throughput, and with --compare a CI gate against a saved baseline.
    Bench(Box<bench::BenchArgs>),
    /// Create a CA and a serving certificate for the webhook's service DNS names.
    Certs(certs::CertsArgs),
}

/// Parses the command line, runs the command and returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format, &cli.log_level);
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            err.print();
            ExitCode::from(err.exit_code())
        }
    }
}

/// Runs a parsed command and returns its exit code.
pub fn run(cli: Cli) -> Result<u8, CliError> {
    match cli.command {
        Command::Serve(args) => serve::run(*args).map(|()| EXIT_OK),
        Command::Check(args) => check::run(args),
        Command::Replay(args) => replay::run(*args),
        Command::Bench(args) => bench::run(*args),
        Command::Certs(args) => certs::run(args).map(|()| EXIT_OK),
    }
}

/// Parses durations such as `10s`, `500ms` or `1m 30s` for flags.
pub(crate) fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration such as 10s or 500ms: {e}"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
