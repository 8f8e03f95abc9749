//! `kadmit check`: Pod Security for manifests, before they reach a cluster.
//!
//! The verdicts and messages come from the same checks and wording as the webhook's; this file
//! only finds the files, reads them and prints.

use std::io::Write as _;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use kadmit_core::ClusterView;
use kadmit_core::cluster::Snapshot;
use kadmit_core::config::{Level, PodSecurityConfig, PolicyVersion};
use kadmit_core::manifest::{PodSecurityResult, check_pod_security, objects};
use kadmit_core::policy::pod_security::PodSecurity;
use kadmit_core::policy::pod_security::labels::LevelVersion;
use kadmit_core::replay::TextFormat;
use serde::Serialize;

use super::inputs::{self, Found, InputLimits};
use crate::error::{CliError, EXIT_FAILURE, EXIT_OK, EXIT_USAGE};

/// Flags of `kadmit check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Pod Security level to check against. Without it, each object is checked against the
    /// enforce level its namespace has in --cluster (namespace from the manifest, else
    /// `default`).
    #[arg(long, value_parser = parse_level)]
    pub level: Option<Level>,
    /// Pod Security version: `latest` or `v1.N` (only with --level).
    #[arg(long, default_value = "latest", value_parser = parse_version, requires = "level")]
    pub version: PolicyVersion,
    /// Output: `text` for people, `json` for tools (one array, one element per object).
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
    /// A cluster snapshot whose namespace labels give the level when --level is not given.
    #[arg(long)]
    pub cluster: Option<PathBuf>,
    /// Files (YAML, multi-document, or JSON) and directories (searched recursively for
    /// *.yaml, *.yml and *.json; symbolic links followed, loops reported; only regular files
    /// are read in a directory). YAML merge keys (`<<`) are resolved as kubectl's YAML library
    /// resolves them; duplicate keys and nesting deeper than 128 levels are input errors.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub limits: InputLimits,
}

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Readable lines with the offending field paths.
    Text,
    /// The JSON array of the interfaces contract.
    Json,
}

fn parse_level(text: &str) -> Result<Level, String> {
    match text {
        "privileged" => Ok(Level::Privileged),
        "baseline" => Ok(Level::Baseline),
        "restricted" => Ok(Level::Restricted),
        other => Err(format!(
            "`{other}` is not a level: use privileged, baseline or restricted"
        )),
    }
}

fn parse_version(text: &str) -> Result<PolicyVersion, String> {
    PolicyVersion::parse(text)
        .ok_or_else(|| format!("`{text}` is not a version: use latest or v1.N, such as v1.30"))
}

/// One element of the JSON output.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Entry {
    Checked {
        path: String,
        index: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        item: Option<usize>,
        kind: String,
        name: String,
        policy: String,
        allowed: bool,
        message: Option<String>,
        violations: Vec<JsonViolation>,
    },
    Error {
        path: String,
        index: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        item: Option<usize>,
        error: String,
    },
}

#[derive(Debug, Serialize)]
struct JsonViolation {
    check: &'static str,
    reason: String,
    detail: String,
    fields: Vec<String>,
}

/// Runs the check and returns the exit code: 0 all allowed, 1 something denied, 2 an input
/// error (which wins, since the verdict is then incomplete).
pub fn run(args: CheckArgs) -> Result<u8, CliError> {
    let namespaces = match &args.cluster {
        Some(path) => Some(super::serve::load_snapshot(
            path,
            Some(args.limits.max_file_bytes),
        )?),
        None => None,
    };
    if args.level.is_none() && namespaces.is_none() {
        return Err(CliError::Usage(
            "give --level (and --version), or --cluster to use the namespaces' enforce labels"
                .to_owned(),
        ));
    }
    let policy = PodSecurity::new(PodSecurityConfig::default());
    let level_for = |namespace: Option<&str>| -> Result<LevelVersion, String> {
        if let Some(level) = args.level {
            return Ok(LevelVersion {
                level,
                version: args.version,
            });
        }
        let snapshot: &Snapshot = namespaces.as_ref().ok_or("no --cluster")?;
        let name = namespace.unwrap_or("default");
        let namespace = snapshot
            .namespace(name)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("namespace \"{name}\" is not in the --cluster snapshot"))?;
        Ok(policy
            .namespace_policy(namespace.metadata.labels.as_ref())
            .0
            .enforce)
    };

    let mut files = Vec::new();
    for path in &args.paths {
        inputs::collect(path, &["yaml", "yml", "json"], &mut files);
    }
    let mut entries = Vec::new();
    let mut unchecked: std::collections::BTreeMap<String, usize> = Default::default();
    for file in &files {
        let (path, text) = match file {
            Found::File(path) => (path, inputs::read_file(path, args.limits.max_file_bytes)),
            Found::Unreadable(path, why) => (path, Err(why.clone())),
        };
        let shown = path.display().to_string();
        let text = match text {
            Ok(text) => text,
            Err(error) => {
                entries.push(Entry::Error {
                    path: shown,
                    index: 0,
                    item: None,
                    error,
                });
                continue;
            }
        };
        // Each object is checked and dropped before the next document is parsed.
        let format = TextFormat::from_file_name(&path.to_string_lossy());
        for object in objects(&text, format) {
            let object = match object {
                Ok(object) => object,
                Err(err) => {
                    entries.push(Entry::Error {
                        path: shown.clone(),
                        index: err.document,
                        item: err.item,
                        error: err.message,
                    });
                    continue;
                }
            };
            let namespace = object
                .value
                .pointer("/metadata/namespace")
                .and_then(|v| v.as_str());
            let checked = level_for(namespace).and_then(|lv| {
                check_pod_security(&object.value, lv.level, lv.version).map(|r| r.map(|r| (lv, r)))
            });
            match checked {
                Ok(Some((lv, result))) => entries.push(checked_entry(
                    &shown,
                    object.document,
                    object.item,
                    lv,
                    result,
                )),
                Ok(None) => {
                    let kind = object
                        .value
                        .get("kind")
                        .and_then(|k| k.as_str())
                        .unwrap_or("?");
                    *unchecked.entry(kind.to_owned()).or_default() += 1;
                }
                Err(error) => entries.push(Entry::Error {
                    path: shown.clone(),
                    index: object.document,
                    item: object.item,
                    error,
                }),
            }
        }
    }

    let denied = entries
        .iter()
        .filter(|e| matches!(e, Entry::Checked { allowed: false, .. }))
        .count();
    let errors = entries
        .iter()
        .filter(|e| matches!(e, Entry::Error { .. }))
        .count();
    let mut stdout = std::io::stdout().lock();
    let written = match args.output {
        Output::Json => serde_json::to_writer_pretty(&mut stdout, &entries)
            .map_err(std::io::Error::other)
            .and_then(|()| writeln!(stdout)),
        Output::Text => print_text(&mut stdout, &entries),
    };
    if let Err(err) = written {
        // A closed pipe (`| head`) is not worth a message; anything else is.
        if err.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("error: writing the output: {err}");
        }
    }
    if !unchecked.is_empty() {
        let kinds: Vec<String> = unchecked.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
        eprintln!("not checked (no pod template): {}", kinds.join(", "));
    }
    if files.is_empty() {
        eprintln!("error: no *.yaml, *.yml or *.json files found in the given paths");
        return Ok(EXIT_USAGE);
    }
    Ok(if errors > 0 {
        EXIT_USAGE
    } else if denied > 0 {
        EXIT_FAILURE
    } else {
        EXIT_OK
    })
}

fn checked_entry(
    path: &str,
    index: usize,
    item: Option<usize>,
    lv: LevelVersion,
    result: PodSecurityResult,
) -> Entry {
    let violations = result
        .verdict
        .violations
        .iter()
        .map(|v| JsonViolation {
            check: v.check,
            reason: v.reason.clone(),
            detail: v.detail.clone(),
            fields: v.fields.iter().map(|f| result.field_path(f)).collect(),
        })
        .collect();
    Entry::Checked {
        path: path.to_owned(),
        index,
        item,
        allowed: result.verdict.message.is_none(),
        message: result.verdict.message,
        kind: result.kind,
        name: result.name,
        policy: lv.to_string(),
        violations,
    }
}

fn print_text(out: &mut impl std::io::Write, entries: &[Entry]) -> std::io::Result<()> {
    let (mut allowed, mut denied, mut errors) = (0, 0, 0);
    for entry in entries {
        match entry {
            Entry::Checked {
                path,
                index,
                item,
                kind,
                name,
                policy,
                allowed: ok,
                message,
                violations,
            } => {
                let at = location(path, *index, *item);
                if *ok {
                    allowed += 1;
                    writeln!(out, "ok    {at} {kind} \"{name}\" ({policy})")?;
                } else {
                    denied += 1;
                    writeln!(out, "DENY  {at} {kind} \"{name}\" ({policy})")?;
                    if let Some(message) = message {
                        writeln!(out, "      {message}")?;
                    }
                    for v in violations {
                        if v.detail.is_empty() {
                            writeln!(out, "      - {}", v.reason)?;
                        } else {
                            writeln!(out, "      - {}: {}", v.reason, v.detail)?;
                        }
                        for field in &v.fields {
                            writeln!(out, "          at {field}")?;
                        }
                    }
                }
            }
            Entry::Error {
                path,
                index,
                item,
                error,
            } => {
                errors += 1;
                writeln!(out, "ERROR {} {error}", location(path, *index, *item))?;
            }
        }
    }
    writeln!(
        out,
        "{allowed} allowed, {denied} denied, {errors} unreadable"
    )
}

fn location(path: &str, index: usize, item: Option<usize>) -> String {
    match item {
        Some(item) => format!("{path}#{index}.{item}"),
        None => format!("{path}#{index}"),
    }
}
