//! TLS for the webhook port: rustls with TLS 1.2/1.3 only, ALPN `h2` and `http/1.1`, optional
//! client-certificate verification, and a certificate that can be swapped while serving.
//!
//! The serving pair sits behind a resolver that every handshake asks, so a rotation takes
//! effect for new connections without restarting listeners or touching open connections.
//! Files are polled by content rather than watched by path: Kubernetes secret volumes replace
//! files by swapping a `..data` symlink, which path-based watches miss.
//!
//! Whoever can write the mounted files can hand the reader anything, so reading is defensive:
//! only regular files (after following symlinks) are read, opened without blocking so a FIFO
//! cannot hang the reloader, at most [`MAX_PEM_FILE_BYTES`] of them, and a chain is refused
//! unless clients could accept it ([`MAX_CHAIN_CERTIFICATES`], [`MAX_CHAIN_DER_BYTES`]).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

use crate::telemetry::metrics::Metrics;

/// The most bytes read from a certificate, key or client CA file.
///
/// A PEM certificate or key is a few kilobytes and a large CA bundle (every public root) a few
/// hundred; 1 MiB leaves room for any of them while bounding what one poll can make kadmit
/// allocate when the file is something else (a device, a runaway writer).
pub const MAX_PEM_FILE_BYTES: u64 = 1024 * 1024;

/// The most certificates in the served chain (leaf included).
///
/// A served chain is the leaf and the intermediates between it and the CA in the `caBundle`;
/// real ones hold two to four. Clients refuse long paths anyway: rustls-webpki accepts at most 6
/// intermediates, and Go's verifier (the API server's) gives up after 100 signature checks
/// across the candidates it is given. 10 holds the longest path a client accepts (the leaf and 6
/// intermediates) plus the CA itself, which some tools append, with room to spare, and refuses at
/// reload time what would otherwise be "loaded" and then fail every handshake.
pub const MAX_CHAIN_CERTIFICATES: usize = 10;

/// The most DER bytes in the served chain.
///
/// The chain travels in one Certificate handshake message. rustls clients refuse handshake
/// messages of 64 KiB or more (`MAX_HANDSHAKE_SIZE = 0xffff`); Go's TLS client (the API
/// server's) refuses a Certificate message above 256 KiB, and releases before that capped every
/// handshake message at 64 KiB. 60 KiB of DER keeps the message, with its per-certificate
/// framing, under all of them: a larger chain would load and then fail handshakes.
pub const MAX_CHAIN_DER_BYTES: usize = 60 * 1024;

/// How long one poll may spend reading the pair before the reloader stops waiting for it.
///
/// Opening without blocking leaves only a regular file on a stuck filesystem (a hung network
/// mount) able to stall a read; the reloader then counts a failure and polls again once that
/// read returns, instead of queueing a blocked thread per poll.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A certificate, key or CA that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The path (after following symlinks) is not a regular file: a FIFO, device, socket or
    /// directory, which could block the reader or never end.
    #[error("{} is a {kind}, not a regular file; certificates and keys are read from regular files only", path.display())]
    NotRegularFile {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// The file is larger than [`MAX_PEM_FILE_BYTES`].
    #[error("{} is larger than {max} bytes, the most kadmit reads from a certificate or key file", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The cap.
        max: u64,
    },
    /// The chain holds more than [`MAX_CHAIN_CERTIFICATES`] certificates.
    #[error("{what}: the chain holds {count} certificates, more than the {max} a client accepts")]
    ChainTooLong {
        /// Which input.
        what: String,
        /// Certificates found.
        count: usize,
        /// The cap.
        max: usize,
    },
    /// The chain's DER encoding is larger than [`MAX_CHAIN_DER_BYTES`].
    #[error(
        "{what}: the chain is {bytes} bytes of DER, more than the {max} a client accepts in a handshake"
    )]
    ChainTooLarge {
        /// Which input.
        what: String,
        /// DER bytes of the whole chain.
        bytes: usize,
        /// The cap.
        max: usize,
    },
    /// No PEM certificate in the certificate data.
    #[error("{what}: no PEM certificate found{}", pem_hint(.detail))]
    NoCertificate {
        /// Which input.
        what: String,
        /// The PEM parser's complaint, if any.
        detail: Option<String>,
    },
    /// The private key is missing or not understood.
    #[error("{what}: {detail}")]
    BadKey {
        /// Which input.
        what: String,
        /// Why.
        detail: String,
    },
    /// The key does not belong to the certificate.
    #[error("the private key does not match the certificate ({what})")]
    KeyMismatch {
        /// Which input.
        what: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn pem_hint(detail: &Option<String>) -> String {
    detail
        .as_ref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default()
}

/// The crypto provider kadmit uses everywhere (ring: no C toolchain or cmake needed to build).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds a signing pair from PEM: the certificate chain (leaf first, intermediates allowed)
/// and its private key. `what` names the source in errors.
///
/// The chain must be one clients accept (at most [`MAX_CHAIN_CERTIFICATES`] certificates and
/// [`MAX_CHAIN_DER_BYTES`] bytes) and the key must match the leaf, so that a rotation is refused
/// here rather than served and failed in every handshake.
pub fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    what: &str,
) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::NoCertificate {
            what: what.to_owned(),
            detail: Some(e.to_string()),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            what: what.to_owned(),
            detail: None,
        });
    }
    if chain.len() > MAX_CHAIN_CERTIFICATES {
        return Err(TlsError::ChainTooLong {
            what: what.to_owned(),
            count: chain.len(),
            max: MAX_CHAIN_CERTIFICATES,
        });
    }
    let bytes: usize = chain.iter().map(|cert| cert.len()).sum();
    if bytes > MAX_CHAIN_DER_BYTES {
        return Err(TlsError::ChainTooLarge {
            what: what.to_owned(),
            bytes,
            max: MAX_CHAIN_DER_BYTES,
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::BadKey {
        what: what.to_owned(),
        detail: format!("no usable PEM private key ({e})"),
    })?;
    let signing_key =
        provider()
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsError::BadKey {
                what: what.to_owned(),
                detail: e.to_string(),
            })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::KeyMismatch {
            what: what.to_owned(),
        }),
        // Keys whose public half cannot be derived cannot be checked; rustls will still refuse
        // handshakes if they do not match, so accept them here.
        Err(_) => Ok(certified),
    }
}

/// Hands every handshake the current serving pair; [`CertResolver::set`] swaps it.
#[derive(Debug)]
pub struct CertResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertResolver {
    /// A resolver serving `key`.
    pub fn new(key: CertifiedKey) -> Arc<CertResolver> {
        Arc::new(CertResolver {
            current: RwLock::new(Arc::new(key)),
        })
    }

    /// Serves `key` from the next handshake on.
    pub fn set(&self, key: CertifiedKey) {
        // A poisoned lock only means a writer panicked mid-assignment of an Arc, which cannot
        // leave a torn value; keep serving.
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        *current = Arc::new(key);
    }

    fn get(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// The rustls configuration for the webhook port.
///
/// With `client_ca_pem`, clients must present a certificate that chains to it.
pub fn server_config(
    resolver: Arc<CertResolver>,
    client_ca_pem: Option<(&[u8], &str)>,
) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some((pem, what)) => {
            let mut roots = RootCertStore::empty();
            let mut found = false;
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| TlsError::NoCertificate {
                    what: what.to_owned(),
                    detail: Some(e.to_string()),
                })?;
                roots
                    .add(cert)
                    .map_err(|e| TlsError::Config(format!("{what}: {e}")))?;
                found = true;
            }
            if !found {
                return Err(TlsError::NoCertificate {
                    what: what.to_owned(),
                    detail: None,
                });
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Config(format!("{what}: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Where the serving pair comes from, and how to notice that it changed.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

impl CertFiles {
    /// Reads both files (following symlinks, as a secret volume needs), with [`read`]'s checks.
    pub fn read(&self) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
        Ok((read(&self.cert)?, read(&self.key)?))
    }

    /// Reads and loads the pair: the same checks at startup as on every reload.
    pub fn load(&self) -> Result<CertifiedKey, TlsError> {
        let (cert, key) = self.read()?;
        certified_key(&cert, &key, &self.describe())
    }

    fn describe(&self) -> String {
        format!("{} + {}", self.cert.display(), self.key.display())
    }
}

/// Reads a certificate, key or CA file: a regular file (symlinks followed) of at most
/// [`MAX_PEM_FILE_BYTES`], with its path in every error.
///
/// The type is checked on the opened handle, not by a separate `stat` first (which a swap in
/// between would defeat), and the open itself does not block, so a FIFO is refused instead of
/// waiting forever for a writer; a device such as `/dev/zero` is refused before any byte is read.
pub fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    let io_error = |source| TlsError::Read {
        path: path.to_owned(),
        source,
    };
    let file = open_nonblocking(path).map_err(io_error)?;
    let metadata = file.metadata().map_err(io_error)?;
    if !metadata.is_file() {
        return Err(TlsError::NotRegularFile {
            path: path.to_owned(),
            kind: file_kind(&metadata.file_type()),
        });
    }
    let too_large = || TlsError::TooLarge {
        path: path.to_owned(),
        max: MAX_PEM_FILE_BYTES,
    };
    if metadata.len() > MAX_PEM_FILE_BYTES {
        return Err(too_large());
    }
    // The size can change between the check and the read (a writer still appending), so the
    // read itself is capped too: one byte over the cap is enough to know it is too large.
    let mut bytes = Vec::new();
    file.take(MAX_PEM_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() as u64 > MAX_PEM_FILE_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Opens for reading without waiting: on unix `O_NONBLOCK` makes opening a FIFO return at once
/// (reads of regular files ignore the flag), and `O_NOCTTY` keeps a terminal device from becoming
/// the process's controlling terminal before it is refused.
#[cfg(unix)]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    File::open(path)
}

/// Names a file type that is not a regular file, for the error.
fn file_kind(file_type: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "FIFO";
        }
        if file_type.is_char_device() {
            return "character device";
        }
        if file_type.is_block_device() {
            return "block device";
        }
        if file_type.is_socket() {
            return "socket";
        }
    }
    if file_type.is_dir() {
        "directory"
    } else {
        "special file"
    }
}

/// A pair's PEM contents, certificate then key.
type Pair = (Vec<u8>, Vec<u8>);

/// What the reloader has seen, so each distinct failure is logged and counted once.
///
/// Polls repeat: a file that stays broken (a FIFO left in place, a half-written pair nobody
/// completes) would otherwise be counted every `interval` and drown the one event that matters.
#[derive(Debug, Default)]
struct ReloadState {
    /// The content last tried: the pair being served, or a broken one already reported.
    last_content: Option<Pair>,
    /// The last read failure reported; cleared by a successful read.
    last_error: Option<String>,
}

impl ReloadState {
    /// Handles one poll's outcome: returns the pair to serve when the content changed and
    /// loads, and counts a failure when this failure was not the last one reported.
    fn observe(
        &mut self,
        read: Result<Pair, String>,
        files: &CertFiles,
        metrics: &Metrics,
    ) -> Option<CertifiedKey> {
        let pair = match read {
            Ok(pair) => pair,
            Err(error) => {
                if self.last_error.as_deref() != Some(error.as_str()) {
                    metrics.cert_reload("failure");
                    tracing::error!(%error, "cannot read the serving certificate; keeping the current one");
                    self.last_error = Some(error);
                }
                return None;
            }
        };
        if self.last_error.take().is_some() {
            tracing::info!(cert = %files.cert.display(), "the serving certificate files are readable again");
        }
        if self.last_content.as_ref() == Some(&pair) {
            return None;
        }
        let loaded = certified_key(&pair.0, &pair.1, &files.describe());
        // Remember the content either way: a broken one is reported once, not every poll, and
        // a later change (the missing half arriving) is tried again.
        self.last_content = Some(pair);
        match loaded {
            Ok(key) => {
                metrics.cert_reload("success");
                tracing::info!(cert = %files.cert.display(), "serving certificate reloaded");
                Some(key)
            }
            Err(error) => {
                metrics.cert_reload("failure");
                tracing::error!(%error, "new serving certificate does not load; keeping the current one");
                None
            }
        }
    }
}

/// Polls `files` every `interval` and swaps a changed, valid pair into `resolver`.
///
/// A pair that does not load (unreadable, not a regular file, too large, a chain clients would
/// refuse, a key not matching) is logged, counted in `kadmit_tls_certificate_reloads_total
/// {result="failure"}` and the current one kept. The loop never ends on an error and never waits
/// on a read for longer than [`READ_TIMEOUT`]; each distinct failure is reported once, and the
/// same content is retried only when it changes again.
pub async fn watch_cert_files(
    files: CertFiles,
    resolver: Arc<CertResolver>,
    interval: Duration,
    metrics: Arc<Metrics>,
) {
    let reader = files.clone();
    let poll = Poll {
        files,
        interval,
        read_timeout: READ_TIMEOUT,
    };
    poll.run(move || reader.read(), &resolver, &metrics).await;
}

/// The reload loop, with the reading and the timeout injectable so tests can stall a read.
struct Poll {
    /// Named in logs and errors.
    files: CertFiles,
    interval: Duration,
    read_timeout: Duration,
}

impl Poll {
    async fn run<R>(self, read: R, resolver: &CertResolver, metrics: &Metrics)
    where
        R: Fn() -> Result<Pair, TlsError> + Clone + Send + 'static,
    {
        let mut state = ReloadState {
            last_content: read().ok(),
            last_error: None,
        };
        // A read that outlived `read_timeout`: polls wait for it to return rather than start
        // another blocked thread each time.
        let mut stuck: Option<tokio::task::JoinHandle<Result<Pair, TlsError>>> = None;
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            if stuck.as_ref().is_some_and(|task| !task.is_finished()) {
                continue;
            }
            // A stuck read that has since returned is stale; read afresh.
            stuck = None;
            let mut task = tokio::task::spawn_blocking(read.clone());
            let outcome = match tokio::time::timeout(self.read_timeout, &mut task).await {
                Ok(Ok(result)) => result.map_err(|err| err.to_string()),
                Ok(Err(err)) => Err(format!("certificate reader task failed: {err}")),
                Err(_) => {
                    stuck = Some(task);
                    Err(format!(
                        "reading {} took longer than {:?}",
                        self.files.describe(),
                        self.read_timeout
                    ))
                }
            };
            if let Some(key) = state.observe(outcome, &self.files, metrics) {
                resolver.set(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_generated_pairs_and_rejects_mismatches() {
        let a = crate::certs::generate(&["a.example".to_owned()], &[], 1).unwrap();
        let b = crate::certs::generate(&["b.example".to_owned()], &[], 1).unwrap();
        certified_key(a.cert_pem.as_bytes(), a.key_pem.as_bytes(), "a").unwrap();
        let err = certified_key(a.cert_pem.as_bytes(), b.key_pem.as_bytes(), "mixed").unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
        let err = certified_key(b"", a.key_pem.as_bytes(), "empty").unwrap_err();
        assert_eq!(err.to_string(), "empty: no PEM certificate found");
        let err = certified_key(a.cert_pem.as_bytes(), b"junk", "nokey").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("nokey: no usable PEM private key"),
            "{err}"
        );
    }

    use std::sync::mpsc;

    fn pair() -> crate::certs::GeneratedCerts {
        crate::certs::generate(&["a.example".to_owned()], &[], 1).unwrap()
    }

    /// Runs `f` on its own thread and fails (rather than hangs) if it does not return in 10 s:
    /// the bug under test is a read that never returns.
    fn within_10s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the read blocked for 10 s")
    }

    fn mkfifo(path: &Path) {
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success(), "mkfifo {}", path.display());
    }

    /// The counter `kadmit_tls_certificate_reloads_total{result}` as /metrics shows it.
    fn reloads(metrics: &Metrics, result: &str) -> u64 {
        let prefix = format!("kadmit_tls_certificate_reloads_total{{result=\"{result}\"}} ");
        metrics
            .encode()
            .lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .map_or(0, |n| n.trim().parse().unwrap())
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("tls.crt");
        mkfifo(&fifo);
        // Through a symlink, as a secret volume's files are.
        let link = dir.path().join("link.crt");
        std::os::unix::fs::symlink(&fifo, &link).unwrap();
        for path in [fifo, link] {
            let err = within_10s(move || read(&path)).unwrap_err();
            assert!(
                matches!(err, TlsError::NotRegularFile { kind: "FIFO", .. }),
                "{err}"
            );
            assert!(
                err.to_string().contains("is a FIFO, not a regular file"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_key_that_is_a_fifo_is_refused_too() {
        let dir = tempfile::tempdir().unwrap();
        let certs = pair();
        let files = CertFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
        };
        std::fs::write(&files.cert, &certs.cert_pem).unwrap();
        mkfifo(&files.key);
        let err = within_10s(move || files.load().map(drop)).unwrap_err();
        assert!(
            matches!(err, TlsError::NotRegularFile { ref path, .. } if path.ends_with("tls.key")),
            "{err}"
        );
    }

    #[test]
    fn devices_and_directories_are_refused_before_any_read() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("tls.crt");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let err = within_10s(move || read(&link)).unwrap_err();
        assert!(
            matches!(
                err,
                TlsError::NotRegularFile {
                    kind: "character device",
                    ..
                }
            ),
            "{err}"
        );
        let err = read(dir.path()).unwrap_err();
        // Opening a directory for reading succeeds on Linux; the handle's type refuses it.
        assert!(
            matches!(
                err,
                TlsError::NotRegularFile {
                    kind: "directory",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn files_over_the_cap_are_refused_with_the_cap_named() {
        let dir = tempfile::tempdir().unwrap();
        let cap = usize::try_from(MAX_PEM_FILE_BYTES).unwrap();
        let at_cap = dir.path().join("at-cap.pem");
        std::fs::write(&at_cap, vec![b'a'; cap]).unwrap();
        assert_eq!(read(&at_cap).unwrap().len(), cap);
        let over = dir.path().join("over.pem");
        std::fs::write(&over, vec![b'a'; cap + 1]).unwrap();
        let err = read(&over).unwrap_err();
        assert!(matches!(err, TlsError::TooLarge { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!(
                "{} is larger than 1048576 bytes, the most kadmit reads from a certificate or key file",
                over.display()
            )
        );
    }

    #[test]
    fn a_missing_file_names_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone.crt");
        let err = read(&missing).unwrap_err();
        assert!(matches!(err, TlsError::Read { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("reading {}: ", missing.display())),
            "{err}"
        );
    }

    #[test]
    fn chains_longer_than_clients_accept_are_refused() {
        let certs = pair();
        let chain = |n: usize| certs.cert_pem.repeat(n);
        certified_key(
            chain(MAX_CHAIN_CERTIFICATES).as_bytes(),
            certs.key_pem.as_bytes(),
            "ten",
        )
        .unwrap();
        let err =
            certified_key(chain(2000).as_bytes(), certs.key_pem.as_bytes(), "long").unwrap_err();
        assert_eq!(
            err.to_string(),
            "long: the chain holds 2000 certificates, more than the 10 a client accepts"
        );
    }

    #[test]
    fn chains_larger_than_a_handshake_message_are_refused() {
        use base64::Engine;
        let certs = pair();
        // Few certificates but large ones; only the leaf is parsed, so filler blocks suffice.
        let filler = base64::engine::general_purpose::STANDARD.encode(vec![0u8; 8 * 1024]);
        let mut pem = certs.cert_pem.clone();
        for _ in 0..8 {
            pem.push_str(&format!(
                "-----BEGIN CERTIFICATE-----\n{filler}\n-----END CERTIFICATE-----\n"
            ));
        }
        let err = certified_key(pem.as_bytes(), certs.key_pem.as_bytes(), "big").unwrap_err();
        assert!(matches!(err, TlsError::ChainTooLarge { .. }), "{err}");
        assert!(err.to_string().contains("more than the 61440"), "{err}");
    }

    #[test]
    fn each_distinct_failure_is_counted_once() {
        let metrics = Metrics::new();
        let files = CertFiles {
            cert: PathBuf::from("tls.crt"),
            key: PathBuf::from("tls.key"),
        };
        let good = pair();
        let good: Pair = (good.cert_pem.into_bytes(), good.key_pem.into_bytes());
        let mut state = ReloadState {
            last_content: Some(good.clone()),
            last_error: None,
        };
        let fifo = || Err("tls.crt is a FIFO".to_owned());
        let huge = || Err("tls.crt is too large".to_owned());
        for _ in 0..3 {
            assert!(state.observe(fifo(), &files, &metrics).is_none());
        }
        assert_eq!(
            reloads(&metrics, "failure"),
            1,
            "a persisting error counts once"
        );
        assert!(state.observe(huge(), &files, &metrics).is_none());
        assert!(state.observe(huge(), &files, &metrics).is_none());
        assert_eq!(
            reloads(&metrics, "failure"),
            2,
            "a different error counts again"
        );
        // Readable again with unchanged content: nothing to reload or count.
        assert!(state.observe(Ok(good.clone()), &files, &metrics).is_none());
        assert_eq!(reloads(&metrics, "success"), 0);
        // The same error after a good read is a new occurrence.
        assert!(state.observe(fifo(), &files, &metrics).is_none());
        assert_eq!(reloads(&metrics, "failure"), 3);
        // A broken pair is counted once however often it is read.
        let other = pair();
        let broken: Pair = (other.cert_pem.clone().into_bytes(), good.1.clone());
        for _ in 0..3 {
            assert!(
                state
                    .observe(Ok(broken.clone()), &files, &metrics)
                    .is_none()
            );
        }
        assert_eq!(reloads(&metrics, "failure"), 4);
        // A valid new pair loads once.
        let rotated: Pair = (other.cert_pem.into_bytes(), other.key_pem.into_bytes());
        assert!(
            state
                .observe(Ok(rotated.clone()), &files, &metrics)
                .is_some()
        );
        assert!(state.observe(Ok(rotated), &files, &metrics).is_none());
        assert_eq!(reloads(&metrics, "success"), 1);
        assert_eq!(reloads(&metrics, "failure"), 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_read_is_counted_once_and_does_not_stop_the_loop() {
        use std::sync::Mutex;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let first = pair();
        let second = pair();
        let metrics = Arc::new(Metrics::new());
        let resolver = CertResolver::new(
            certified_key(first.cert_pem.as_bytes(), first.key_pem.as_bytes(), "first").unwrap(),
        );
        // Read 0 (the loop's baseline) returns the first pair, read 1 stalls until released,
        // later reads return the second pair.
        let calls = Arc::new(AtomicUsize::new(0));
        let (release, stalled) = mpsc::channel::<()>();
        let stalled = Arc::new(Mutex::new(stalled));
        let read = {
            let (calls, stalled) = (Arc::clone(&calls), Arc::clone(&stalled));
            let (first, second) = (first.clone(), second.clone());
            move || -> Result<Pair, TlsError> {
                let certs = match calls.fetch_add(1, Ordering::SeqCst) {
                    0 => &first,
                    1 => {
                        let _ = stalled.lock().unwrap().recv();
                        &first
                    }
                    _ => &second,
                };
                Ok((
                    certs.cert_pem.clone().into_bytes(),
                    certs.key_pem.clone().into_bytes(),
                ))
            }
        };
        let poll = Poll {
            files: CertFiles {
                cert: PathBuf::from("tls.crt"),
                key: PathBuf::from("tls.key"),
            },
            interval: Duration::from_millis(20),
            read_timeout: Duration::from_millis(50),
        };
        let task = {
            let (resolver, metrics) = (Arc::clone(&resolver), Arc::clone(&metrics));
            tokio::spawn(async move { poll.run(read, &resolver, &metrics).await })
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while reloads(&metrics, "failure") == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the stall was not counted"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Many polls while stalled: one failure, and no second read started behind the first.
        assert_eq!(reloads(&metrics, "failure"), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        release.send(()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while reloads(&metrics, "success") == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "no reload after the stall"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            resolver.get().end_entity_cert().unwrap().as_ref(),
            certified_key(
                second.cert_pem.as_bytes(),
                second.key_pem.as_bytes(),
                "second"
            )
            .unwrap()
            .end_entity_cert()
            .unwrap()
            .as_ref()
        );
        assert_eq!(reloads(&metrics, "failure"), 1);
        task.abort();
    }
}
