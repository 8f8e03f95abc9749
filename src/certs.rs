//! Certificates for the webhook: a private CA and a serving certificate for the service's DNS
//! names, as `kadmit certs` writes them and `kadmit serve --dev` makes them in memory.
//!
//! The API server verifies the serving certificate against the webhook configuration's
//! `caBundle` and the name `<service>.<namespace>.svc`, so the SANs must hold that name; the CA
//! is what goes into `caBundle`.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// PEM-encoded CA certificate, serving certificate and serving key.
#[derive(Clone)]
pub struct GeneratedCerts {
    /// The CA certificate: the webhook configuration's `caBundle` (base64 of this PEM).
    pub ca_pem: String,
    /// The serving certificate, signed by the CA.
    pub cert_pem: String,
    /// The serving certificate's private key (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for GeneratedCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedCerts").finish_non_exhaustive()
    }
}

/// Certificate generation failed.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// A name cannot be put in a certificate.
    #[error("`{name}` is not a valid DNS name for a certificate: {source}")]
    InvalidName {
        /// The offending name.
        name: String,
        /// Why.
        #[source]
        source: rcgen::Error,
    },
    /// Key generation or signing failed.
    #[error("generating the {what}: {source}")]
    Generate {
        /// Which certificate.
        what: &'static str,
        /// Why.
        #[source]
        source: rcgen::Error,
    },
}

/// The DNS names of a Kubernetes service: `NAME`, `NAME.NS`, `NAME.NS.svc`,
/// `NAME.NS.svc.cluster.local`.
pub fn service_dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_owned(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// Makes a new CA and a serving certificate for `dns_names` and `ips`, valid for `days`.
///
/// Both start being valid an hour ago, so clocks that are a little behind still accept them.
pub fn generate(
    dns_names: &[String],
    ips: &[IpAddr],
    days: u32,
) -> Result<GeneratedCerts, CertsError> {
    let ca = new_ca("kadmit webhook CA", days)?;
    let mut params = leaf_params(
        dns_names.first().map(String::as_str).unwrap_or("kadmit"),
        days,
    );
    for dns in dns_names {
        let san = dns
            .as_str()
            .try_into()
            .map_err(|source| CertsError::InvalidName {
                name: dns.clone(),
                source,
            })?;
        params.subject_alt_names.push(SanType::DnsName(san));
    }
    params
        .subject_alt_names
        .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    sign(params, &ca, "serving certificate")
}

/// A client certificate signed by a new CA, for mutual TLS (tests and trying out
/// `--client-ca-file`). Returns the CA and the client pair.
pub fn generate_client(common_name: &str, days: u32) -> Result<GeneratedCerts, CertsError> {
    let ca = new_ca("kadmit client CA", days)?;
    let mut params = leaf_params(common_name, days);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    sign(params, &ca, "client certificate")
}

/// From an hour ago (clocks a little behind still accept it) to `days` from now.
fn validity(params: &mut CertificateParams, days: u32) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(i64::from(days));
}

/// A new self-signed CA that may sign leaf certificates only.
fn new_ca(common_name: &str, days: u32) -> Result<CertifiedIssuer<'static, KeyPair>, CertsError> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params, days);
    let key = KeyPair::generate().map_err(|source| CertsError::Generate {
        what: "CA key",
        source,
    })?;
    CertifiedIssuer::self_signed(params, key).map_err(|source| CertsError::Generate {
        what: "CA certificate",
        source,
    })
}

/// Parameters of a leaf certificate called `common_name`, valid for `days`.
fn leaf_params(common_name: &str, days: u32) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    validity(&mut params, days);
    params
}

/// Signs `params` with a new key by `ca`; `what` names the certificate in errors.
fn sign(
    params: CertificateParams,
    ca: &CertifiedIssuer<'static, KeyPair>,
    what: &'static str,
) -> Result<GeneratedCerts, CertsError> {
    let key = KeyPair::generate().map_err(|source| CertsError::Generate { what, source })?;
    let cert = params
        .signed_by(&key, ca)
        .map_err(|source| CertsError::Generate { what, source })?;
    Ok(GeneratedCerts {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}
