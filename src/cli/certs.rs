//! `kadmit certs`: a CA and a serving certificate for a manual install.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use clap::Args;

use crate::certs::{generate, service_dns_names};
use crate::error::CliError;

/// Flags of `kadmit certs`.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// The webhook's Service name.
    #[arg(long, default_value = "kadmit")]
    pub service: String,
    /// The Service's namespace.
    #[arg(long, default_value = "kadmit")]
    pub namespace: String,
    /// Where to write ca.crt, tls.crt and tls.key (created if missing).
    #[arg(long)]
    pub out_dir: PathBuf,
    /// Validity of both certificates, in days.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub days: u32,
    /// Replace existing files in --out-dir.
    #[arg(long)]
    pub force: bool,
}

/// Writes the files and prints the base64 CA bundle for `caBundle`.
pub fn run(args: CertsArgs) -> Result<(), CliError> {
    let names = service_dns_names(&args.service, &args.namespace);
    let files = ["ca.crt", "tls.crt", "tls.key"].map(|f| args.out_dir.join(f));
    if let Some(existing) = files.iter().find(|f| f.exists() && !args.force) {
        return Err(CliError::Usage(format!(
            "{} already exists; pass --force to replace it",
            existing.display()
        )));
    }
    let certs = generate(&names, &[], args.days)?;
    std::fs::create_dir_all(&args.out_dir).map_err(|source| CliError::File {
        action: "writing",
        path: args.out_dir.clone(),
        source,
    })?;
    write(&files[0], certs.ca_pem.as_bytes(), false)?;
    write(&files[1], certs.cert_pem.as_bytes(), false)?;
    write(&files[2], certs.key_pem.as_bytes(), true)?;
    eprintln!(
        "wrote {}, {} and {} for {} (valid {} days)",
        files[0].display(),
        files[1].display(),
        files[2].display(),
        names.join(", "),
        args.days
    );
    eprintln!("caBundle for the webhook configurations:");
    println!(
        "{}",
        base64::engine::general_purpose::STANDARD.encode(certs.ca_pem.as_bytes())
    );
    Ok(())
}

fn write(path: &Path, contents: &[u8], private: bool) -> Result<(), CliError> {
    let err = |source| CliError::File {
        action: "writing",
        path: path.to_owned(),
        source,
    };
    std::fs::write(path, contents).map_err(err)?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    }
    #[cfg(not(unix))]
    let _ = private;
    Ok(())
}
