//! `kadmit replay`: captured AdmissionReviews, bare requests and manifests through the same
//! policies, offline; optionally compared with the answers given at the time (`--diff`).
//!
//! Reading documents, decoding reviews, the mutate-then-validate sequence and the comparison
//! live in `kadmit_core::replay` (pure, shared with the tests and benchmarks); this file finds
//! the files, reports progress and prints.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use kadmit_core::cluster::Snapshot;
use kadmit_core::replay::{
    self, Decoded, Difference, Origin, Replayable, Replayed, Route, TextFormat, differences,
    patch_summary,
};
use kadmit_core::review::AdmissionResponse;
use kadmit_core::{ClusterView, Pipeline};
use serde::Serialize;
use serde_json::Value;

use super::inputs::{self, Found, InputLimits};
use super::serve::load_config;
use crate::error::{CliError, EXIT_FAILURE, EXIT_OK, EXIT_USAGE};

/// Flags of `kadmit replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Configuration file (YAML) to replay with; without it the built-in defaults apply.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A cluster snapshot (namespaces, LimitRanges, secrets, service accounts, GMSA specs,
    /// RBAC); without it every namespace exists, unlabelled.
    #[arg(long)]
    pub cluster: Option<PathBuf>,
    /// Where each review is sent. Without it, capture records go to the endpoint that answered
    /// them and everything else to mutate then validate, as the API server calls the two
    /// webhooks.
    #[arg(long, value_enum)]
    pub endpoint: Option<EndpointArg>,
    /// Namespace of plain manifests that do not name one [default: default].
    #[arg(long)]
    pub namespace: Option<String>,
    /// Output: `text` for people, `json` for tools (one array, one element per review),
    /// `junit` for CI (one test case per review).
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
    /// Show only the reviews whose decision, message, warnings or patch differ from the answer
    /// recorded with them (capture records, envelopes with a `response`), and how many; exit 1
    /// when any does.
    #[arg(long)]
    pub diff: bool,
    /// AdmissionReviews (v1, v1beta1; JSON or YAML, one or many documents), bare
    /// AdmissionRequests, plain manifests (replayed as CREATE), capture files (*.jsonl, one
    /// record per line), directories (searched recursively for *.json, *.jsonl, *.yaml and
    /// *.yml; symbolic links followed, loops reported; only regular files are read in a
    /// directory), or `-` for standard input. YAML merge keys (`<<`) are resolved as kubectl's
    /// YAML library resolves them; duplicate keys and nesting deeper than 128 levels are input
    /// errors.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub limits: InputLimits,
}

/// `--endpoint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EndpointArg {
    /// `/mutate` only.
    Mutate,
    /// `/validate` only.
    Validate,
    /// `/mutate`, then `/validate` on the mutated object.
    Both,
}

impl From<EndpointArg> for Route {
    fn from(arg: EndpointArg) -> Route {
        match arg {
            EndpointArg::Mutate => Route::Mutate,
            EndpointArg::Validate => Route::Validate,
            EndpointArg::Both => Route::Both,
        }
    }
}

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A table for people: decision, code, policy, message, warnings, patch summary.
    Text,
    /// The JSON array of the interfaces contract.
    Json,
    /// JUnit XML: one test case per review; a denial (with --diff: a change) is a failure, an
    /// unusable document an error.
    Junit,
}

/// What `replay` and `bench` search directories for.
pub(crate) const REPLAY_EXTENSIONS: &[&str] = &["json", "jsonl", "yaml", "yml"];

/// Inputs at least this large (in bytes, all files together) get a progress bar on a terminal.
const PROGRESS_BYTES: u64 = 1 << 20;
/// Or at least this many files.
const PROGRESS_FILES: usize = 200;

/// One replayed review, with what the outputs need.
struct Reviewed {
    /// The input it came from (a file's path, or `-`), to group JUnit test suites.
    input: String,
    source: String,
    uid: String,
    kind: String,
    namespace: Option<String>,
    name: Option<String>,
    operation: &'static str,
    route: Route,
    replayed: Replayed,
    /// With --diff: how the answer differs from the recorded one; `None` when nothing was
    /// recorded.
    changes: Option<Vec<Difference>>,
}

/// One element of the output.
enum Entry {
    Reviewed(Box<Reviewed>),
    Error {
        input: String,
        source: String,
        error: String,
    },
}

/// A file or standard input.
enum Input {
    Stdin,
    File(PathBuf),
    /// A path that could not be read or searched, and why; reported as an input error, and
    /// replay goes on with the others.
    Unreadable(PathBuf, String),
}

/// Runs the replay and returns the exit code: 2 if any input could not be replayed (the
/// verdict is incomplete, which matters more), else 1 if anything was denied (with --diff: if
/// any answer changed), else 0.
pub fn run(args: ReplayArgs) -> Result<u8, CliError> {
    let config = load_config(args.config.as_deref(), Some(args.limits.max_file_bytes))?;
    let cluster: Box<dyn ClusterView> = match &args.cluster {
        Some(path) => Box::new(super::serve::load_snapshot(
            path,
            Some(args.limits.max_file_bytes),
        )?),
        None => Box::new(Snapshot::dev()),
    };
    let pipeline = Pipeline::from_config(&config);

    let mut inputs = Vec::new();
    for path in &args.paths {
        if path.as_os_str() == "-" {
            inputs.push(Input::Stdin);
        } else {
            let mut found = Vec::new();
            inputs::collect(path, REPLAY_EXTENSIONS, &mut found);
            inputs.extend(found.into_iter().map(|found| match found {
                Found::File(path) => Input::File(path),
                Found::Unreadable(path, why) => Input::Unreadable(path, why),
            }));
        }
    }
    if inputs.is_empty() {
        eprintln!("error: no *.json, *.jsonl, *.yaml or *.yml files found in the given paths");
        return Ok(EXIT_USAGE);
    }
    let progress = progress_bar(&inputs);

    let mut entries = Vec::new();
    let mut done_bytes = 0;
    for input in &inputs {
        let (shown, stem, text) = match input {
            Input::Unreadable(path, why) => {
                let shown = path.display().to_string();
                entries.push(Entry::Error {
                    input: shown.clone(),
                    source: shown,
                    error: why.clone(),
                });
                continue;
            }
            Input::Stdin => match inputs::read_stdin(args.limits.max_file_bytes) {
                Ok(text) => ("-".to_owned(), "stdin".to_owned(), text),
                Err(error) => {
                    entries.push(Entry::Error {
                        input: "-".to_owned(),
                        source: "-".to_owned(),
                        error: format!("standard input: {error}"),
                    });
                    continue;
                }
            },
            Input::File(path) => {
                let shown = path.display().to_string();
                let stem = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "input".to_owned());
                match inputs::read_file(path, args.limits.max_file_bytes) {
                    Ok(text) => (shown, stem, text),
                    Err(error) => {
                        entries.push(Entry::Error {
                            input: shown.clone(),
                            source: shown,
                            error,
                        });
                        continue;
                    }
                }
            }
        };
        let format = match input {
            Input::File(path) => TextFormat::from_file_name(&path.to_string_lossy()),
            _ => TextFormat::Detect,
        };
        let context = FileContext {
            shown: &shown,
            stem: &stem,
            always_line: format == TextFormat::JsonLines,
            counts_progress: matches!(input, Input::File(_)),
            namespace: args.namespace.as_deref(),
            endpoint: args.endpoint.map(Route::from),
            diff: args.diff,
            pipeline: &pipeline,
            cluster: cluster.as_ref(),
        };
        replay_text(&text, format, &context, &mut entries, &progress);
        // The bar counts files' sizes; standard input is not in its total.
        if let Input::File(_) = input {
            done_bytes += text.len() as u64;
            progress.set_position(done_bytes);
        }
    }
    progress.finish_and_clear();

    let summary = Summary::of(&entries, args.diff);
    // Buffered: stdout is line-buffered, and a replay of a week of traffic prints many lines.
    let paint = Paint::for_stdout();
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let written = match args.output {
        Output::Json => write_json(&mut stdout, &entries, args.diff),
        Output::Text => write_text(&mut stdout, &entries, &summary, args.diff, paint),
        Output::Junit => write_junit(&mut stdout, &entries, args.diff),
    }
    .and_then(|()| stdout.flush());
    if let Err(err) = written {
        // A closed pipe (`| head`) is not worth a message; anything else is.
        if err.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("error: writing the output: {err}");
        }
    }
    if args.output != Output::Text {
        eprintln!("{}", summary.line(args.diff));
    }
    Ok(if summary.errors > 0 {
        EXIT_USAGE
    } else if (args.diff && summary.changed > 0) || (!args.diff && summary.denied > 0) {
        EXIT_FAILURE
    } else {
        EXIT_OK
    })
}

/// What every document of one input shares.
struct FileContext<'a> {
    shown: &'a str,
    stem: &'a str,
    /// Capture files: every record is named by its line, even a file of one line.
    always_line: bool,
    /// Whether the text is a file, whose bytes the progress bar counts.
    counts_progress: bool,
    namespace: Option<&'a str>,
    endpoint: Option<Route>,
    diff: bool,
    pipeline: &'a Pipeline,
    cluster: &'a dyn ClusterView,
}

/// Replays every document of one text, in order.
fn replay_text(
    text: &str,
    format: TextFormat,
    context: &FileContext<'_>,
    entries: &mut Vec<Entry>,
    progress: &ProgressBar,
) {
    let mut documents = replay::documents(text, format).peekable();
    let mut ordinal = 0;
    while let Some(document) = documents.next() {
        ordinal += 1;
        if context.counts_progress {
            progress.inc(document.len as u64);
        }
        // A file of one document is named by its path alone; otherwise `path:line`.
        let single = ordinal == 1 && documents.peek().is_none() && !context.always_line;
        let source = if single {
            context.shown.to_owned()
        } else {
            format!("{}:{}", context.shown, document.line)
        };
        let value = match document.value {
            Ok(value) => value,
            Err(err) => {
                entries.push(Entry::Error {
                    input: context.shown.to_owned(),
                    source,
                    error: err.to_string(),
                });
                continue;
            }
        };
        let origin = Origin {
            stem: context.stem,
            ordinal,
            namespace: context.namespace,
        };
        for Decoded { item, result } in replay::decode_document(value, &origin) {
            let source = match item {
                Some(item) => format!("{source}[{item}]"),
                None => source.clone(),
            };
            match result {
                Ok(replayable) => entries.push(Entry::Reviewed(Box::new(evaluate(
                    replayable, source, context,
                )))),
                Err(err) => entries.push(Entry::Error {
                    input: context.shown.to_owned(),
                    source,
                    error: err.to_string(),
                }),
            }
        }
    }
}

/// Replays one review on its route and, with --diff, compares the answer with the recorded one.
fn evaluate(replayable: Replayable, source: String, context: &FileContext<'_>) -> Reviewed {
    let Replayable {
        review,
        endpoint,
        recorded,
        ..
    } = replayable;
    let route = context
        .endpoint
        .or(endpoint.map(Route::from))
        .unwrap_or(Route::Both);
    let replayed = replay::replay(context.pipeline, &review, route, context.cluster);
    let changes = match (&recorded, context.diff) {
        (Some(recorded), true) => Some(differences(recorded, &replayed.response)),
        _ => None,
    };
    let request = review.request;
    Reviewed {
        input: context.shown.to_owned(),
        source,
        uid: request.uid,
        kind: request.kind.kind,
        namespace: request.namespace,
        name: request.name,
        operation: request.operation.as_str(),
        route,
        replayed,
        changes,
    }
}

/// A progress bar on stderr for large inputs, only when stderr is a terminal: never in a pipe
/// or a CI log, where it would be noise.
fn progress_bar(inputs: &[Input]) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let files: Vec<&PathBuf> = inputs
        .iter()
        .filter_map(|input| match input {
            Input::File(path) => Some(path),
            _ => None,
        })
        .collect();
    let total: u64 = files
        .iter()
        .filter_map(|path| std::fs::metadata(path).ok())
        .map(|m| m.len())
        .sum();
    if total < PROGRESS_BYTES && files.len() < PROGRESS_FILES {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    // The template is a constant; the fallback keeps the default look should it be refused.
    let style =
        ProgressStyle::with_template("replaying {wide_bar} {bytes}/{total_bytes} ({eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// Counts for the closing line and the exit code.
#[derive(Debug, Default)]
struct Summary {
    reviews: usize,
    allowed: usize,
    denied: usize,
    patched: usize,
    warned: usize,
    errors: usize,
    /// With --diff: reviews whose answer changed, did not, or had nothing recorded.
    changed: usize,
    unchanged: usize,
    unrecorded: usize,
    denied_by: BTreeMap<String, usize>,
}

impl Summary {
    fn of(entries: &[Entry], diff: bool) -> Summary {
        let mut summary = Summary::default();
        for entry in entries {
            let reviewed = match entry {
                Entry::Error { .. } => {
                    summary.errors += 1;
                    continue;
                }
                Entry::Reviewed(reviewed) => reviewed,
            };
            summary.reviews += 1;
            let response = &reviewed.replayed.response;
            if response.allowed {
                summary.allowed += 1;
            } else {
                summary.denied += 1;
                *summary
                    .denied_by
                    .entry(policy_label(&reviewed.replayed).to_owned())
                    .or_default() += 1;
            }
            summary.patched += usize::from(!response.patch.is_empty());
            summary.warned += usize::from(!response.warnings.is_empty());
            if diff {
                match &reviewed.changes {
                    None => summary.unrecorded += 1,
                    Some(changes) if changes.is_empty() => summary.unchanged += 1,
                    Some(_) => summary.changed += 1,
                }
            }
        }
        summary
    }

    fn line(&self, diff: bool) -> String {
        let errors = match self.errors {
            0 => String::new(),
            1 => "; 1 input error".to_owned(),
            n => format!("; {n} input errors"),
        };
        if diff {
            return format!(
                "{} of {} compared reviews would now be answered differently ({} unchanged, {} without a recorded answer){errors}",
                self.changed,
                self.changed + self.unchanged,
                self.unchanged,
                self.unrecorded,
            );
        }
        let by_policy = if self.denied_by.is_empty() {
            String::new()
        } else {
            let parts: Vec<String> = self
                .denied_by
                .iter()
                .map(|(policy, n)| format!("{policy} {n}"))
                .collect();
            format!(" (by {})", parts.join(", "))
        };
        format!(
            "{} reviews: {} allowed ({} patched, {} with warnings), {} denied{by_policy}{errors}",
            self.reviews, self.allowed, self.patched, self.warned, self.denied
        )
    }
}

/// The policy that denied; a denial no policy made is the object failing to decode (400) or
/// a patch that does not apply (500).
fn policy_label(replayed: &Replayed) -> &str {
    match (&replayed.denied_by, replayed.response.status.as_ref()) {
        (Some(policy), _) => policy,
        (None, Some(status)) if status.code == 400 => "(object does not decode)",
        (None, _) => "(no policy)",
    }
}

/// One element of `--output json`: the contract's keys in the contract's order, then
/// kadmit's additions (`policy`, `endpoint`, and with --diff `changes`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonReview<'a> {
    source: &'a str,
    uid: &'a str,
    kind: &'a str,
    namespace: Option<&'a str>,
    name: Option<&'a str>,
    operation: &'a str,
    allowed: bool,
    code: Option<u16>,
    message: Option<&'a str>,
    warnings: &'a [String],
    audit_annotations: &'a BTreeMap<String, String>,
    /// The JSON Patch operations, decoded.
    patch: Value,
    policy: Option<&'a str>,
    endpoint: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    changes: Option<Vec<JsonChange<'a>>>,
}

#[derive(Serialize)]
struct JsonChange<'a> {
    field: &'a str,
    recorded: &'a Value,
    now: &'a Value,
}

/// An element of `--output json`, serialized in field order (a `serde_json::Value` would sort
/// the keys).
#[derive(Serialize)]
#[serde(untagged)]
enum JsonEntry<'a> {
    Review(Box<JsonReview<'a>>),
    Error(JsonError<'a>),
}

#[derive(Serialize)]
struct JsonError<'a> {
    source: &'a str,
    error: &'a str,
}

/// Whether an entry is shown: everything, or with --diff the changed reviews and the errors.
fn shown(entry: &Entry, diff: bool) -> bool {
    match entry {
        Entry::Reviewed(reviewed) if diff => {
            reviewed.changes.as_ref().is_some_and(|c| !c.is_empty())
        }
        _ => true,
    }
}

fn write_json(out: &mut impl std::io::Write, entries: &[Entry], diff: bool) -> std::io::Result<()> {
    let mut elements = Vec::new();
    for entry in entries.iter().filter(|e| shown(e, diff)) {
        elements.push(match entry {
            Entry::Error { source, error, .. } => JsonEntry::Error(JsonError { source, error }),
            Entry::Reviewed(r) => {
                let response = &r.replayed.response;
                JsonEntry::Review(Box::new(JsonReview {
                    source: &r.source,
                    uid: &r.uid,
                    kind: &r.kind,
                    namespace: r.namespace.as_deref(),
                    name: r.name.as_deref(),
                    operation: r.operation,
                    allowed: response.allowed,
                    code: response.status.as_ref().map(|s| s.code),
                    message: response.status.as_ref().map(|s| s.message.as_str()),
                    warnings: &response.warnings,
                    audit_annotations: &response.audit_annotations,
                    patch: serde_json::to_value(&response.patch).map_err(std::io::Error::other)?,
                    policy: r.replayed.denied_by.as_deref(),
                    endpoint: r.route.as_str(),
                    changes: r.changes.as_ref().map(|changes| {
                        changes
                            .iter()
                            .map(|d| JsonChange {
                                field: d.field.as_str(),
                                recorded: &d.recorded,
                                now: &d.now,
                            })
                            .collect()
                    }),
                }))
            }
        });
    }
    serde_json::to_writer_pretty(&mut *out, &elements).map_err(std::io::Error::other)?;
    writeln!(out)
}

/// ANSI colour, only for a terminal and unless `NO_COLOR` is set (https://no-color.org).
#[derive(Debug, Clone, Copy)]
struct Paint(bool);

impl Paint {
    fn for_stdout() -> Paint {
        let wanted = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            && !matches!(std::env::var("TERM").as_deref(), Ok("dumb"));
        Paint(wanted && std::io::stdout().is_terminal())
    }

    /// `text` padded to `width`, then coloured (so escapes do not upset the alignment).
    fn pad(self, code: &str, text: &str, width: usize) -> String {
        let padded = format!("{text:<width$}");
        if self.0 {
            format!("\x1b[{code}m{padded}\x1b[0m")
        } else {
            padded
        }
    }
}

const GREEN: &str = "32";
const RED: &str = "1;31";
const MAGENTA: &str = "1;35";
const YELLOW: &str = "33";
const CYAN: &str = "36";
const DIM: &str = "2";

/// What the REQUEST column shows: `CREATE Pod default/web`.
fn request_label(r: &Reviewed) -> String {
    let name = r
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or("(no name)");
    match r.namespace.as_deref().filter(|ns| !ns.is_empty()) {
        Some(ns) => format!("{} {} {ns}/{name}", r.operation, r.kind),
        None => format!("{} {} {name}", r.operation, r.kind),
    }
}

fn write_text(
    out: &mut impl std::io::Write,
    entries: &[Entry],
    summary: &Summary,
    diff: bool,
    paint: Paint,
) -> std::io::Result<()> {
    let visible: Vec<&Entry> = entries.iter().filter(|e| shown(e, diff)).collect();
    let widest = |cell: &dyn Fn(&Entry) -> usize, least: usize, most: usize| {
        visible
            .iter()
            .map(|e| cell(e))
            .max()
            .unwrap_or(least)
            .clamp(least, most)
    };
    let policy_width = widest(
        &|e| match e {
            Entry::Reviewed(r) => policy_cell(r).chars().count(),
            Entry::Error { .. } => 1,
        },
        6,
        40,
    );
    let request_width = widest(
        &|e| match e {
            Entry::Reviewed(r) => request_label(r).chars().count(),
            Entry::Error { .. } => UNREADABLE.len(),
        },
        7,
        60,
    );
    if !visible.is_empty() {
        let header = format!(
            "{:<7}  {:<4}  {:<policy_width$}  {:<request_width$}  SOURCE",
            "RESULT", "CODE", "POLICY", "REQUEST"
        );
        writeln!(out, "{}", paint.pad(DIM, &header, 0))?;
    }
    // Details go under the POLICY column.
    let indent = " ".repeat(7 + 2 + 4 + 2);
    for entry in visible {
        match entry {
            Entry::Error { source, error, .. } => {
                writeln!(
                    out,
                    "{}  {:<4}  {:<policy_width$}  {UNREADABLE:<request_width$}  {source}",
                    paint.pad(MAGENTA, "error", 7),
                    "-",
                    "-",
                )?;
                writeln!(out, "{indent}{error}")?;
            }
            Entry::Reviewed(r) => {
                let response = &r.replayed.response;
                let (label, colour) = if response.allowed {
                    ("allowed", GREEN)
                } else {
                    ("denied", RED)
                };
                let code = response
                    .status
                    .as_ref()
                    .map_or("-".to_owned(), |s| s.code.to_string());
                writeln!(
                    out,
                    "{}  {code:<4}  {:<policy_width$}  {:<request_width$}  {}",
                    paint.pad(colour, label, 7),
                    policy_cell(r),
                    request_label(r),
                    r.source,
                )?;
                // With --diff the changes say what the answer is now, next to what it was.
                if !diff {
                    if let Some(status) = &response.status {
                        writeln!(out, "{indent}message: {}", status.message)?;
                    }
                    for warning in &response.warnings {
                        let line = format!("warning: {warning}");
                        writeln!(out, "{indent}{}", paint.pad(YELLOW, &line, 0))?;
                    }
                    if !response.patch.is_empty() {
                        writeln!(out, "{indent}patch:   {}", patch_line(response))?;
                    }
                }
                for change in r.changes.iter().flatten() {
                    let line = format!(
                        "changed {}: {} → {}",
                        change.field.as_str(),
                        shown_value(&change.recorded),
                        shown_value(&change.now)
                    );
                    writeln!(out, "{indent}{}", paint.pad(CYAN, &line, 0))?;
                }
            }
        }
    }
    writeln!(out, "{}", summary.line(diff))
}

/// The REQUEST cell of a document that is not a usable review.
const UNREADABLE: &str = "(not replayed)";

fn policy_cell(r: &Reviewed) -> &str {
    if r.replayed.response.allowed {
        "-"
    } else {
        policy_label(&r.replayed)
    }
}

/// A compared value for the text output: decisions and messages as they read, patches as a
/// summary, lists as JSON.
fn shown_value(value: &Value) -> String {
    match value {
        Value::Null => "(none)".to_owned(),
        Value::String(text) => format!("{text:?}"),
        Value::Array(items) if items.iter().all(|i| i.get("op").is_some()) && !items.is_empty() => {
            patch_summary(items, 3)
        }
        other => other.to_string(),
    }
}

/// `+2 ops: add /metadata/annotations, …` for a response's patch.
fn patch_line(response: &AdmissionResponse) -> String {
    match serde_json::to_value(&response.patch) {
        Ok(Value::Array(ops)) => patch_summary(&ops, 3),
        _ => format!("+{} ops", response.patch.len()),
    }
}

/// JUnit XML, written by hand: the format is five elements deep, and what needs care is the
/// escaping — markup characters become entities, line breaks in attributes become character
/// references (or parsers fold them to spaces), and the characters XML 1.0 forbids even as
/// references (most C0 controls, U+FFFE, U+FFFF), which real reviews can carry in names and
/// messages, are written as visible `\u{..}` escapes instead of producing a file CI cannot
/// parse.
fn write_junit(
    out: &mut impl std::io::Write,
    entries: &[Entry],
    diff: bool,
) -> std::io::Result<()> {
    // Test suites by input, in input order.
    let mut suites: Vec<(&str, Vec<&Entry>)> = Vec::new();
    for entry in entries {
        let input = match entry {
            Entry::Reviewed(r) => r.input.as_str(),
            Entry::Error { input, .. } => input.as_str(),
        };
        match suites.last_mut() {
            Some((name, members)) if *name == input => members.push(entry),
            _ => suites.push((input, vec![entry])),
        }
    }
    let outcome = |entry: &Entry| -> Outcome {
        match entry {
            Entry::Error { .. } => Outcome::Error,
            Entry::Reviewed(r) if diff => match &r.changes {
                None => Outcome::Skipped,
                Some(changes) if changes.is_empty() => Outcome::Passed,
                Some(_) => Outcome::Failed,
            },
            Entry::Reviewed(r) if r.replayed.response.allowed => Outcome::Passed,
            Entry::Reviewed(_) => Outcome::Failed,
        }
    };
    let count = |members: &[&Entry], wanted: Outcome| {
        members.iter().filter(|e| outcome(e) == wanted).count()
    };
    let all: Vec<&Entry> = entries.iter().collect();
    let mut xml = String::new();
    xml.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"kadmit replay\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\">",
        all.len(),
        count(&all, Outcome::Failed),
        count(&all, Outcome::Error),
        count(&all, Outcome::Skipped),
    );
    for (name, members) in &suites {
        let _ = writeln!(
            xml,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\">",
            attr(name),
            members.len(),
            count(members, Outcome::Failed),
            count(members, Outcome::Error),
            count(members, Outcome::Skipped),
        );
        for entry in members {
            match entry {
                Entry::Error { source, error, .. } => {
                    let _ = writeln!(
                        xml,
                        "    <testcase classname=\"{}\" name=\"{}\">\n      <error type=\"input\" message=\"{}\">{}</error>\n    </testcase>",
                        attr(name),
                        attr(&case_name(name, source, None)),
                        attr(error),
                        text(error)
                    );
                }
                Entry::Reviewed(r) => {
                    let _ = write!(
                        xml,
                        "    <testcase classname=\"{}\" name=\"{}\">",
                        attr(name),
                        attr(&case_name(name, &r.source, Some(&request_label(r))))
                    );
                    let response = &r.replayed.response;
                    let message = response.status.as_ref().map(|s| s.message.as_str());
                    match outcome(entry) {
                        Outcome::Failed if diff => {
                            let lines: Vec<String> = r
                                .changes
                                .iter()
                                .flatten()
                                .map(|c| {
                                    format!(
                                        "{}: {} → {}",
                                        c.field.as_str(),
                                        shown_value(&c.recorded),
                                        shown_value(&c.now)
                                    )
                                })
                                .collect();
                            let _ = write!(
                                xml,
                                "\n      <failure type=\"changed\" message=\"{}\">{}</failure>\n    ",
                                attr(&format!("the answer changed: {}", lines.len())),
                                text(&lines.join("\n"))
                            );
                        }
                        Outcome::Failed => {
                            let code = response.status.as_ref().map_or(0, |s| s.code);
                            let _ = write!(
                                xml,
                                "\n      <failure type=\"{}\" message=\"{}\">{}</failure>\n    ",
                                attr(policy_label(&r.replayed)),
                                attr(message.unwrap_or("denied")),
                                text(&format!("{code} {}", message.unwrap_or("denied")))
                            );
                        }
                        Outcome::Skipped => {
                            xml.push_str("\n      <skipped message=\"no recorded answer to compare with\"/>\n    ");
                        }
                        Outcome::Passed | Outcome::Error => {}
                    }
                    let mut notes: Vec<String> = response
                        .warnings
                        .iter()
                        .map(|w| format!("warning: {w}"))
                        .collect();
                    if !response.patch.is_empty() {
                        notes.push(format!("patch: {}", patch_line(response)));
                    }
                    if !notes.is_empty() {
                        let _ = write!(
                            xml,
                            "\n      <system-out>{}</system-out>\n    ",
                            text(&notes.join("\n"))
                        );
                    }
                    xml.push_str("</testcase>\n");
                }
            }
        }
        xml.push_str("  </testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    out.write_all(xml.as_bytes())
}

/// A test case's name within its file's suite: the position in the file (when the file has
/// several documents) and the request, such as `12: CREATE Pod default/web`.
fn case_name(input: &str, source: &str, request: Option<&str>) -> String {
    let position = source
        .strip_prefix(input)
        .unwrap_or(source)
        .trim_start_matches(':');
    match (position.is_empty(), request) {
        (true, Some(request)) => request.to_owned(),
        (false, Some(request)) => format!("{position}: {request}"),
        (true, None) => "document".to_owned(),
        (false, None) => format!("{position}: document"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Passed,
    Failed,
    Error,
    Skipped,
}

/// Escapes `value` for a double-quoted XML attribute.
fn attr(value: &str) -> String {
    escape(value, true)
}

/// Escapes `value` for XML character data.
fn text(value: &str) -> String {
    escape(value, false)
}

fn escape(value: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\t' | '\n' => out.push(c),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => {
                let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_breaks_and_forbidden_characters() {
        assert_eq!(
            attr("a<b & \"c\" 'd'>\n\te\r"),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;&#10;&#9;e&#13;"
        );
        assert_eq!(
            text("x\ny\tz\u{0}\u{1b}[31m\u{ffff}"),
            "x\ny\tz\\u{0000}\\u{001b}[31m\\u{ffff}"
        );
        assert_eq!(text("ő岅ȕHH壬%龺"), "ő岅ȕHH壬%龺");
    }
}
