//! `kadmit serve`: the admission webhook.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use kadmit_core::cluster::Snapshot;
use kadmit_core::review::DEFAULT_MAX_DECODED_BYTES;
use kadmit_core::{ClusterView, Config, Pipeline};

use super::parse_duration;
use crate::certs;
use crate::cluster::live::{AuthorizerSettings, Caches, LiveCluster, client_from_kubeconfig};
use crate::error::CliError;
use crate::server::body::BodyBudget;
use crate::server::capture::{self, CaptureHandle, CaptureOptions, RedactPath};
use crate::server::state::{
    AppState, DEFAULT_BODY_BUDGET, DEFAULT_DECODED_BUDGET, Limits, Readiness,
};
use crate::server::tls::{self, CertFiles, CertResolver};
use crate::server::{BoundServer, Timing, shutdown_signal};
use crate::telemetry::metrics::Metrics;

/// Flags of `kadmit serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (YAML); without it the built-in defaults apply.
    #[arg(long, env = "KADMIT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Serving certificate (PEM, leaf first, intermediates allowed); reloaded when it changes.
    #[arg(long, env = "KADMIT_TLS_CERT_FILE", requires = "tls_private_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// Private key of the serving certificate (PEM); reloaded when it changes.
    #[arg(long, env = "KADMIT_TLS_PRIVATE_KEY_FILE", requires = "tls_cert_file")]
    pub tls_private_key_file: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM), as an API server configured with a
    /// webhook kubeconfig presents.
    #[arg(long, env = "KADMIT_CLIENT_CA_FILE")]
    pub client_ca_file: Option<PathBuf>,
    /// Address of the HTTPS webhook port [default: 0.0.0.0:8443; 127.0.0.1:8443 with --dev].
    #[arg(long, env = "KADMIT_BIND")]
    pub bind: Option<SocketAddr>,
    /// Address of the plain-HTTP /healthz, /readyz and /metrics port [default: 0.0.0.0:8080;
    /// 127.0.0.1:8080 with --dev].
    #[arg(long, env = "KADMIT_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,
    /// Serve from a cluster snapshot (YAML or JSON objects) instead of a live API server.
    #[arg(long, env = "KADMIT_CLUSTER", conflicts_with = "kubeconfig")]
    pub cluster: Option<PathBuf>,
    /// Kubeconfig for the API server; without it, the usual discovery: KUBECONFIG or
    /// ~/.kube/config, then the in-cluster service account.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Try it out: no cluster (every namespace exists, unlabelled; or --cluster), the built-in
    /// configuration unless --config is given, and a self-signed certificate made in memory;
    /// prints a curl command.
    #[arg(long)]
    pub dev: bool,
    /// Largest request body accepted; larger ones get 413.
    #[arg(long, env = "KADMIT_MAX_BODY_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// The bytes of request bodies all requests together may hold at once (at least
    /// --max-body-bytes). A body takes its share as it arrives, 16 KiB at a time. When there is
    /// no room, an HTTP/1.1 body that holds nothing yet, or the oldest one, waits in turn until
    /// its deadline; any other gets 503 at once, as does an HTTP/2 body.
    #[arg(long, env = "KADMIT_MAX_BUFFERED_BODY_BYTES", default_value_t = DEFAULT_BODY_BUDGET)]
    pub max_buffered_body_bytes: usize,
    /// The memory that decoding the reviews being answered may build, all together (at least
    /// --max-decoded-bytes). A review waits in turn for its share until its deadline, then gets
    /// 503; a body over 256 KiB takes --max-decoded-bytes before it is decoded and gives back
    /// what it did not use.
    #[arg(long, env = "KADMIT_MAX_BUFFERED_DECODED_BYTES", default_value_t = DEFAULT_DECODED_BUDGET)]
    pub max_buffered_decoded_bytes: usize,
    /// The most memory decoding one review may build (as kadmit counts it: twice what the
    /// decoded lists and maps take, plus their strings). An object past it is denied (code 400,
    /// naming the list where decoding stopped), whatever failure.onError says; real pods need a
    /// small fraction of the default.
    #[arg(long, env = "KADMIT_MAX_DECODED_BYTES", default_value_t = DEFAULT_MAX_DECODED_BYTES)]
    pub max_decoded_bytes: usize,
    /// How long a client may take to send a request body (never past the request's deadline);
    /// a stalled upload is cut off with 408 when it has passed.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub body_read_timeout: Duration,
    /// How long a client may take to send request headers, idle keep-alive time and the wait
    /// for a new connection's first request included.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// How long a TLS handshake may take.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub tls_handshake_timeout: Duration,
    /// How often the certificate files are checked for changes.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub cert_reload_interval: Duration,
    /// On SIGTERM, keep serving this long while reporting not ready, so endpoints are updated
    /// before the listener closes.
    #[arg(long, env = "KADMIT_SHUTDOWN_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,
    /// Then give in-flight requests this long to finish.
    #[arg(long, env = "KADMIT_SHUTDOWN_GRACE_PERIOD", default_value = "25s", value_parser = parse_duration)]
    pub shutdown_grace_period: Duration,
    /// Capture each answered review and the response given, one JSON object per line, into
    /// rotating files `kadmit-capture-<UTC time>-<seq>.jsonl` in this directory (created when
    /// missing), for `kadmit replay`. Off by default. Capturing never delays or fails an
    /// admission: when the writer is behind or the disk is full, captures are dropped and
    /// counted in kadmit_capture_dropped_total.
    #[arg(long, env = "KADMIT_CAPTURE_DIR", help_heading = "Capture")]
    pub capture_dir: Option<PathBuf>,
    /// Start a new capture file before one would grow beyond this many bytes.
    #[arg(
        long,
        env = "KADMIT_CAPTURE_MAX_FILE_BYTES",
        default_value_t = capture::DEFAULT_MAX_FILE_BYTES,
        value_parser = clap::value_parser!(u64).range(1..),
        help_heading = "Capture"
    )]
    pub capture_max_file_bytes: u64,
    /// Keep at most this many capture files; the oldest are deleted (so the directory holds at
    /// most max-files x max-file-bytes).
    #[arg(
        long,
        env = "KADMIT_CAPTURE_MAX_FILES",
        default_value_t = capture::DEFAULT_MAX_FILES,
        value_parser = parse_max_files,
        help_heading = "Capture"
    )]
    pub capture_max_files: usize,
    /// Fraction of reviews captured, from 0.0 to 1.0, chosen by a hash of the request uid (a
    /// request's mutate and validate calls are captured together).
    #[arg(
        long,
        env = "KADMIT_CAPTURE_SAMPLE_RATE",
        default_value = "1.0",
        value_parser = capture::parse_sample_rate,
        help_heading = "Capture"
    )]
    pub capture_sample_rate: f64,
    /// A field of request.object and request.oldObject to write as "<redacted>", for every kind:
    /// dotted (metadata.annotations.token) or a JSON Pointer
    /// (/metadata/annotations/example.com~1token); `*` matches any key or element. Repeatable
    /// (comma-separated in the environment variable). The data and stringData values of
    /// Secrets are always redacted.
    #[arg(
        long,
        env = "KADMIT_CAPTURE_REDACT",
        value_name = "PATH",
        value_delimiter = ',',
        value_parser = RedactPath::parse,
        help_heading = "Capture"
    )]
    pub capture_redact: Vec<RedactPath>,
}

fn parse_max_files(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("`{text}` is not a file count of at least 1")),
    }
}

/// Runs the server until SIGTERM or SIGINT.
pub fn run(args: ServeArgs) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> Result<(), CliError> {
    if args.max_buffered_body_bytes < args.max_body_bytes {
        // A body the limit allows could never get its share: it would always wait, then 503.
        return Err(CliError::Usage(format!(
            "--max-buffered-body-bytes ({}) must be at least --max-body-bytes ({})",
            args.max_buffered_body_bytes, args.max_body_bytes
        )));
    }
    if args.max_buffered_decoded_bytes < args.max_decoded_bytes {
        // A large review could never get its share.
        return Err(CliError::Usage(format!(
            "--max-buffered-decoded-bytes ({}) must be at least --max-decoded-bytes ({})",
            args.max_buffered_decoded_bytes, args.max_decoded_bytes
        )));
    }
    let config = load_config(args.config.as_deref(), None)?;
    let metrics = Arc::new(Metrics::new());
    let capture = match &args.capture_dir {
        Some(dir) => Some(start_capture(&args, dir, &metrics)?),
        None => None,
    };
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let bind = args
        .bind
        .unwrap_or_else(|| SocketAddr::new(if args.dev { loopback } else { any }, 8443));
    let metrics_bind = args
        .metrics_bind
        .unwrap_or_else(|| SocketAddr::new(if args.dev { loopback } else { any }, 8080));

    // Certificates: files (reloaded), or made in memory for --dev.
    let client_ca = match &args.client_ca_file {
        Some(path) => Some((tls::read(path)?, path.display().to_string())),
        None => None,
    };
    let (resolver, cert_files, dev_certs) = match (&args.tls_cert_file, &args.tls_private_key_file)
    {
        (Some(cert), Some(key)) => {
            let files = CertFiles {
                cert: cert.clone(),
                key: key.clone(),
            };
            (CertResolver::new(files.load()?), Some(files), None)
        }
        _ if args.dev => {
            let mut ips = vec![loopback, IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])];
            if !bind.ip().is_unspecified() && !ips.contains(&bind.ip()) {
                ips.push(bind.ip());
            }
            let mut names = vec!["localhost".to_owned()];
            names.extend(certs::service_dns_names("kadmit", "kadmit"));
            let generated = certs::generate(&names, &ips, 30)?;
            let key = tls::certified_key(
                generated.cert_pem.as_bytes(),
                generated.key_pem.as_bytes(),
                "the in-memory dev certificate",
            )?;
            (CertResolver::new(key), None, Some(generated))
        }
        _ => {
            return Err(CliError::Usage(
                "--tls-cert-file and --tls-private-key-file are required (or --dev to try kadmit with a generated certificate)"
                    .to_owned(),
            ));
        }
    };
    let tls_config = tls::server_config(
        Arc::clone(&resolver),
        client_ca
            .as_ref()
            .map(|(pem, what)| (pem.as_slice(), what.as_str())),
    )?;

    // The cluster view: a snapshot, nothing (--dev), or the live API server.
    let (cluster, readiness): (Arc<dyn ClusterView>, Readiness) = match (&args.cluster, args.dev) {
        (Some(path), _) => (Arc::new(load_snapshot(path, None)?), Readiness::always()),
        (None, true) => (Arc::new(Snapshot::dev()), Readiness::always()),
        (None, false) => {
            let client = client_from_kubeconfig(args.kubeconfig.as_deref()).await?;
            // Only the caches the enabled policies read, so RBAC can grant no more than that.
            let live = LiveCluster::start_with_caches(
                client,
                Caches::for_config(&config),
                AuthorizerSettings::default(),
            );
            let synced = live.clone();
            (
                Arc::new(live),
                Readiness::new(Arc::new(move || synced.is_synced())),
            )
        }
    };

    let pipeline = Pipeline::from_config(&config);
    tracing::info!(policies = ?pipeline.policy_names(), on_error = config.failure.on_error.as_str(), "policy pipeline ready");
    let state = Arc::new(AppState {
        pipeline: Arc::new(pipeline),
        cluster,
        metrics: Arc::clone(&metrics),
        limits: Limits {
            max_body_bytes: args.max_body_bytes,
            body_read_timeout: args.body_read_timeout,
            body_budget: BodyBudget::new(args.max_buffered_body_bytes),
            decoded_budget: BodyBudget::new(args.max_buffered_decoded_bytes),
            max_decoded_bytes: args.max_decoded_bytes,
        },
        readiness,
        capture: capture.clone(),
    });
    let timing = Timing {
        handshake_timeout: args.tls_handshake_timeout,
        header_read_timeout: args.header_read_timeout,
        shutdown_delay: args.shutdown_delay,
        shutdown_grace_period: args.shutdown_grace_period,
    };
    let server = BoundServer::bind(bind, metrics_bind, tls_config, state, timing).await?;
    let webhook_addr = server.webhook_addr();
    tracing::info!(webhook = %webhook_addr, metrics = %server.metrics_addr(), "serving");

    if let Some(files) = cert_files {
        tokio::spawn(tls::watch_cert_files(
            files,
            resolver,
            args.cert_reload_interval,
            Arc::clone(&metrics),
        ));
    }
    let dev_dir = match &dev_certs {
        Some(generated) => Some(print_dev_banner(
            generated,
            webhook_addr,
            server.metrics_addr(),
            &dev_mode(args.config.as_deref(), args.cluster.as_deref()),
        )?),
        None => None,
    };
    let result = server.run(shutdown_signal()).await;
    if let Some(capture) = capture
        && !capture.flush(Duration::from_secs(5)).await
    {
        tracing::warn!("captures still queued at shutdown were not all written");
    }
    if let Some(dir) = dev_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(result?)
}

fn start_capture(
    args: &ServeArgs,
    dir: &Path,
    metrics: &Arc<Metrics>,
) -> Result<CaptureHandle, CliError> {
    let mut options = CaptureOptions::new(dir);
    options.max_file_bytes = args.capture_max_file_bytes;
    options.max_files = args.capture_max_files;
    options.sample_rate = args.capture_sample_rate;
    options.redact = args.capture_redact.clone();
    let handle = CaptureHandle::start(options, Arc::clone(metrics)).map_err(|err| {
        CliError::Usage(format!(
            "--capture-dir {}: cannot use it as the capture directory: {err}",
            dir.display()
        ))
    })?;
    tracing::info!(
        dir = %dir.display(),
        max_file_bytes = args.capture_max_file_bytes,
        max_files = args.capture_max_files,
        sample_rate = args.capture_sample_rate,
        redact = ?args.capture_redact.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "capturing reviews"
    );
    Ok(handle)
}

/// What `--dev` runs with, for its banner: it must not claim the built-in configuration or no
/// cluster when `--config` or `--cluster` was given.
fn dev_mode(config: Option<&Path>, cluster: Option<&Path>) -> String {
    let cluster = match cluster {
        Some(path) => format!("cluster snapshot {}", path.display()),
        None => "no cluster".to_owned(),
    };
    let config = match config {
        Some(path) => format!("configuration {}", path.display()),
        None => "built-in configuration".to_owned(),
    };
    format!("{cluster}, {config}, self-signed certificate")
}

/// The configuration file, or the built-in defaults without one (shared by serve, replay and
/// bench). `max_bytes`: the offline tools' `--max-file-bytes`; the server reads its own files
/// whole.
pub(crate) fn load_config(path: Option<&Path>, max_bytes: Option<u64>) -> Result<Config, CliError> {
    let Some(path) = path else {
        return Ok(Config::default());
    };
    let text = read_text(path, max_bytes)?;
    Config::from_yaml(&text).map_err(|source| CliError::Config {
        path: path.to_owned(),
        source,
    })
}

/// The cluster snapshot (shared by serve, check, replay and bench); `max_bytes` as for
/// [`load_config`].
pub(crate) fn load_snapshot(path: &Path, max_bytes: Option<u64>) -> Result<Snapshot, CliError> {
    let text = read_text(path, max_bytes)?;
    let snapshot = Snapshot::parse(&text).map_err(|source| CliError::Snapshot {
        path: path.to_owned(),
        source,
    })?;
    tracing::info!(
        file = %path.display(),
        namespaces = snapshot.namespace_count(),
        unused = ?snapshot.unused,
        "cluster snapshot loaded"
    );
    Ok(snapshot)
}

/// A file's text, within `max_bytes` when given.
fn read_text(path: &Path, max_bytes: Option<u64>) -> Result<String, CliError> {
    let read = match max_bytes {
        Some(max) => super::inputs::read_file(path, max).map_err(std::io::Error::other),
        None => std::fs::read_to_string(path),
    };
    read.map_err(|source| CliError::File {
        action: "reading",
        path: path.to_owned(),
        source,
    })
}

/// A pod CREATE review for the printed curl command.
const DEV_REVIEW: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"default","operation":"CREATE","userInfo":{"username":"dev"},"object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"hello","namespace":"default"},"spec":{"containers":[{"name":"app","image":"nginx"}]}}}}"#;

/// Writes the dev CA where curl can read it and prints how to call the server.
fn print_dev_banner(
    generated: &certs::GeneratedCerts,
    webhook: SocketAddr,
    metrics: SocketAddr,
    mode: &str,
) -> Result<PathBuf, CliError> {
    let dir = std::env::temp_dir().join(format!("kadmit-dev-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| CliError::File {
        action: "writing",
        path: dir.clone(),
        source,
    })?;
    let ca = dir.join("ca.crt");
    std::fs::write(&ca, &generated.ca_pem).map_err(|source| CliError::File {
        action: "writing",
        path: ca.clone(),
        source,
    })?;
    let host = match webhook.ip() {
        ip if ip.is_unspecified() || ip.is_loopback() => "localhost".to_owned(),
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    let port = webhook.port();
    println!("kadmit is serving https://{host}:{port} (dev mode: {mode})");
    println!("CA certificate: {}", ca.display());
    println!("Probes and metrics: http://{metrics}/readyz and http://{metrics}/metrics");
    println!("Try it:");
    println!(
        "curl --silent --show-error --cacert {} -H 'Content-Type: application/json' --data '{DEV_REVIEW}' https://{host}:{port}/validate",
        ca.display()
    );
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dev_banner_says_what_it_runs_with() {
        assert_eq!(
            dev_mode(None, None),
            "no cluster, built-in configuration, self-signed certificate"
        );
        assert_eq!(
            dev_mode(Some(Path::new("p.yaml")), Some(Path::new("c.yaml"))),
            "cluster snapshot c.yaml, configuration p.yaml, self-signed certificate"
        );
    }
}
