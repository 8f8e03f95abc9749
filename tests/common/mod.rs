//! Test harness: the real server on 127.0.0.1 with certificates made by kadmit's own code, and
//! a real HTTPS client that verifies the CA and the service name `kadmit.kadmit.svc`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod admission;
pub mod fake_api;
pub mod process;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kadmit::certs::{self, GeneratedCerts};
use kadmit::core::cluster::Snapshot;
use kadmit::core::{ClusterView, Config, Pipeline, Policy};
use kadmit::server::capture::{CaptureHandle, CaptureOptions};
use kadmit::server::state::{AppState, Limits, Readiness};
use kadmit::server::tls::{self, CertFiles, CertResolver};
use kadmit::server::{BoundServer, ServerError, Timing};
use kadmit::telemetry::metrics::Metrics;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The name the API server verifies: `<service>.<namespace>.svc`.
pub const SERVICE_NAME: &str = "kadmit.kadmit.svc";

/// How a test server is set up.
pub struct TestOptions {
    pub config: Config,
    /// Policies added after the configured ones (test-only policies).
    pub extra_policies: Vec<Arc<dyn Policy>>,
    pub limits: Limits,
    pub timing: Timing,
    /// Require client certificates signed by this CA.
    pub client_ca_pem: Option<String>,
    /// Watch the certificate files with this interval.
    pub cert_reload_interval: Option<Duration>,
    pub cluster: Arc<dyn ClusterView>,
    /// Readiness inputs; always ready by default.
    pub readiness: Readiness,
    /// Capture reviews (`--capture-dir`); off by default.
    pub capture: Option<CaptureOptions>,
}

impl Default for TestOptions {
    fn default() -> Self {
        TestOptions {
            config: Config::default(),
            extra_policies: Vec::new(),
            limits: Limits::default(),
            timing: Timing::default(),
            client_ca_pem: None,
            cert_reload_interval: None,
            cluster: Arc::new(Snapshot::dev()),
            readiness: Readiness::always(),
            capture: None,
        }
    }
}

/// A running server and what a test needs to talk to it.
pub struct TestServer {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub certs: GeneratedCerts,
    /// Holds `tls.crt` and `tls.key` (as symlinks through `..data`, like a secret volume).
    pub dir: tempfile::TempDir,
    pub metrics: Arc<Metrics>,
    /// The capture writer, when `TestOptions::capture` was set.
    pub capture: Option<CaptureHandle>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), ServerError>>>,
}

/// A CA and serving certificate for the service name.
pub fn service_certs() -> GeneratedCerts {
    certs::generate(&certs::service_dns_names("kadmit", "kadmit"), &[], 1).unwrap()
}

/// Writes a pair the way the kubelet fills a secret volume: files in a timestamped directory,
/// `..data` a symlink to it, `tls.crt`/`tls.key` symlinks through `..data`. Calling it again
/// swaps `..data` atomically, as a secret update does.
pub fn write_secret_volume(dir: &Path, certs: &GeneratedCerts) {
    use std::os::unix::fs::symlink;
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let version = format!("..{}_{n}", std::process::id());
    let version_dir = dir.join(&version);
    std::fs::create_dir_all(&version_dir).unwrap();
    std::fs::write(version_dir.join("tls.crt"), &certs.cert_pem).unwrap();
    std::fs::write(version_dir.join("tls.key"), &certs.key_pem).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(&version, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for file in ["tls.crt", "tls.key"] {
        let link = dir.join(file);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(format!("..data/{file}"), &link).unwrap();
        }
    }
}

impl TestServer {
    pub async fn start(options: TestOptions) -> TestServer {
        Self::start_with_certs(options, service_certs()).await
    }

    pub async fn start_with_certs(options: TestOptions, certs: GeneratedCerts) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        write_secret_volume(dir.path(), &certs);
        let files = CertFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
        };
        let resolver = CertResolver::new(files.load().unwrap());
        let tls_config = tls::server_config(
            Arc::clone(&resolver),
            options
                .client_ca_pem
                .as_deref()
                .map(|pem| (pem.as_bytes(), "test client CA")),
        )
        .unwrap();
        let mut pipeline = Pipeline::from_config(&options.config);
        for policy in options.extra_policies {
            pipeline.push(policy);
        }
        let metrics = Arc::new(Metrics::new());
        let capture = options
            .capture
            .map(|capture| CaptureHandle::start(capture, Arc::clone(&metrics)).unwrap());
        let state = Arc::new(AppState {
            pipeline: Arc::new(pipeline),
            cluster: options.cluster,
            metrics: Arc::clone(&metrics),
            limits: options.limits,
            readiness: options.readiness,
            capture: capture.clone(),
        });
        let localhost = SocketAddr::from(([127, 0, 0, 1], 0));
        let server = BoundServer::bind(localhost, localhost, tls_config, state, options.timing)
            .await
            .unwrap();
        let addr = server.webhook_addr();
        let metrics_addr = server.metrics_addr();
        if let Some(interval) = options.cert_reload_interval {
            tokio::spawn(tls::watch_cert_files(
                files,
                resolver,
                interval,
                Arc::clone(&metrics),
            ));
        }
        let (tx, rx) = oneshot::channel();
        let handle = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            metrics_addr,
            certs,
            dir,
            metrics,
            capture,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    /// `https://kadmit.kadmit.svc:<port><path>`; the client resolves the name to 127.0.0.1.
    pub fn url(&self, path: &str) -> String {
        format!("https://{SERVICE_NAME}:{}{path}", self.addr.port())
    }

    /// A client that trusts only the server's CA and checks the service name.
    pub fn client(&self) -> reqwest::Client {
        self.client_builder().build().unwrap()
    }

    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        client_builder(&[&self.certs.ca_pem], self.addr)
    }

    /// A raw TLS stream to the server (verifying the CA and the service name), for tests that
    /// write HTTP by hand: stalling mid-request, dribbling bytes.
    pub async fn raw_tls(&self) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(self.certs.ca_pem.as_bytes())
        {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(
                rustls::pki_types::ServerName::try_from(SERVICE_NAME).unwrap(),
                tcp,
            )
            .await
            .unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(30), handle)
                .await
                .expect("server stops within 30 s")
                .unwrap()
                .unwrap();
        }
    }
}

/// A client trusting exactly `cas` that resolves the service name to `addr`.
pub fn client_builder(cas: &[&str], addr: SocketAddr) -> reqwest::ClientBuilder {
    let mut builder = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .https_only(true)
        .resolve(SERVICE_NAME, addr)
        .timeout(Duration::from_secs(30));
    for ca in cas {
        builder =
            builder.add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap());
    }
    builder
}

/// An AdmissionReview for a pod CREATE.
pub fn pod_review(api_version: &str, uid: &str) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "default",
            "operation": "CREATE",
            "userInfo": {"username": "alice"},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"containers": [{"name": "app", "image": "nginx"}]}
            }
        }
    })
}

/// `../shared` (or `$KADMIT_SHARED_DIR`), or `None` after printing that the test skips.
pub fn shared_dir(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("KADMIT_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    if dir.is_dir() {
        Some(dir)
    } else {
        println!(
            "SKIPPED {test}: {} is absent (set KADMIT_SHARED_DIR to the shared reference folder)",
            dir.display()
        );
        None
    }
}

/// Sends `body` as JSON to `path` and returns the status and the parsed body.
pub async fn post_json(client: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "answer is not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, value)
}
