//! TLS for the webhook port: rustls with TLS 1.2/1.3 only, ALPN `h2` and `http/1.1`, optional
//! client-certificate verification, and a certificate that can be swapped while serving.
//!
//! The serving pair sits behind a resolver that every handshake asks, so a rotation takes
//! effect for new connections without restarting listeners or touching open connections.
//! Files are polled by content rather than watched by path: Kubernetes secret volumes replace
//! files by swapping a `..data` symlink, which path-based watches miss.

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
    /// Reads both files (following symlinks, as a secret volume needs).
    pub fn read(&self) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
        Ok((read(&self.cert)?, read(&self.key)?))
    }

    /// Reads and loads the pair.
    pub fn load(&self) -> Result<CertifiedKey, TlsError> {
        let (cert, key) = self.read()?;
        certified_key(&cert, &key, &self.describe())
    }

    fn describe(&self) -> String {
        format!("{} + {}", self.cert.display(), self.key.display())
    }
}

/// Reads a file with its path in the error.
pub fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Polls `files` every `interval` and swaps a changed, valid pair into `resolver`.
///
/// A pair that does not load (half-written, mismatched, unreadable) is logged and the current
/// one kept; the loop never ends on an error, and retries the same content only when it changes
/// again, so a broken rotation is reported once rather than every poll.
pub async fn watch_cert_files(
    files: CertFiles,
    resolver: Arc<CertResolver>,
    interval: Duration,
    metrics: Arc<Metrics>,
) {
    let mut last = files.read().ok();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let files = files.clone();
        let read =
            tokio::task::spawn_blocking(move || files.read().map(|pair| (files, pair))).await;
        let (files_back, pair) = match read {
            Ok(Ok(found)) => found,
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "cannot read the serving certificate; keeping the current one");
                continue;
            }
            Err(err) => {
                tracing::warn!(error = %err, "certificate reader task failed; keeping the current one");
                continue;
            }
        };
        if last.as_ref() == Some(&pair) {
            continue;
        }
        match certified_key(&pair.0, &pair.1, &files_back.describe()) {
            Ok(key) => {
                resolver.set(key);
                metrics.cert_reload("success");
                tracing::info!(cert = %files_back.cert.display(), "serving certificate reloaded");
                last = Some(pair);
            }
            Err(err) => {
                metrics.cert_reload("failure");
                // Remember the broken content so it is reported once, not every poll; a later
                // change (the missing half arriving) is tried again.
                tracing::error!(error = %err, "new serving certificate does not load; keeping the current one");
                last = Some(pair);
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
}
