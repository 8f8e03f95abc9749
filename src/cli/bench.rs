//! `kadmit bench`: what the policies cost on the operator's own reviews, in-process.
//!
//! The inputs are read exactly as `kadmit replay` reads them (same documents, same decoding,
//! same mutate-then-validate sequence), then every usable review is re-encoded once as the
//! `AdmissionReview` bytes the API server would send, and each iteration decodes and evaluates
//! those bytes as the server's handler does: `Review::from_slice_for` the endpoint, then
//! [`Pipeline::evaluate_timed`]. Only that work is timed; reading files and applying a
//! mutation's patch for `/validate` (the API server's job) happen before the clock starts.
//!
//! Latencies go into log-bucketed histograms (under 0.4 % relative error) rather than sample
//! lists, so a week of captured traffic times a hundred iterations needs a few hundred
//! kilobytes, not gigabytes. One thread: the figures are per-core costs, comparable between
//! runs on one machine, and the CI gate (`--compare`, `--max-regression`) compares them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use kadmit_core::cluster::Snapshot;
use kadmit_core::policy::pipeline::PolicyTimings;
use kadmit_core::replay::{self, Decoded, Origin, Route, TextFormat, apply_patch};
use kadmit_core::review::{GroupVersionKind, GroupVersionResource};
use kadmit_core::{ClusterView, Endpoint, Pipeline, Review};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::inputs::{self, Found, InputLimits};
use super::replay::{EndpointArg, REPLAY_EXTENSIONS};
use super::serve::{load_config, load_snapshot};
use crate::error::{CliError, EXIT_FAILURE, EXIT_OK};

/// Flags of `kadmit bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Configuration file (YAML) to measure; without it the built-in defaults apply.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A cluster snapshot (namespaces, LimitRanges, secrets, service accounts, GMSA specs,
    /// RBAC); without it every namespace exists, unlabelled.
    #[arg(long)]
    pub cluster: Option<PathBuf>,
    /// Measured passes over all the reviews.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub iterations: u64,
    /// Passes before measuring, to warm caches and the allocator (not counted).
    #[arg(long, default_value_t = 10)]
    pub warmup: u64,
    /// Where each review is sent, as in `kadmit replay`. Without it, capture records go to the
    /// endpoint that answered them and everything else to mutate then validate (the mutated
    /// object), as the API server calls the two webhooks.
    #[arg(long, value_enum)]
    pub endpoint: Option<EndpointArg>,
    /// Namespace of plain manifests that do not name one [default: default].
    #[arg(long)]
    pub namespace: Option<String>,
    /// Output: `text`, a table for people; `json`, one object (the `--save` format).
    #[arg(long, value_enum, default_value = "text")]
    pub output: BenchOutput,
    /// Write the results as a JSON baseline to FILE, for a later `--compare`.
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    /// Compare with a baseline written by `--save` (or `--output json`): each figure beside
    /// the baseline's, with the ratio now/baseline.
    #[arg(long, value_name = "FILE")]
    pub compare: Option<PathBuf>,
    /// With --compare: exit 1 if any p50 or the throughput is worse than the baseline's by more
    /// than PCT percent (time per review: now > baseline × (1 + PCT/100)).
    #[arg(long, value_name = "PCT", value_parser = parse_percent, requires = "compare")]
    pub max_regression: Option<f64>,
    /// AdmissionReviews (v1, v1beta1; JSON or YAML, one or many documents), bare
    /// AdmissionRequests, plain manifests (measured as CREATE), capture files (*.jsonl, one
    /// record per line), directories (searched recursively for *.json, *.jsonl, *.yaml and
    /// *.yml), or `-` for standard input; as `kadmit replay` reads them.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub limits: InputLimits,
}

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchOutput {
    /// A table: p50, p95, p99 and mean per endpoint and policy, then the throughput.
    Text,
    /// One JSON object, the format `--save` writes and `--compare` reads.
    Json,
}

/// `--max-regression`: a finite, non-negative percentage.
fn parse_percent(text: &str) -> Result<f64, String> {
    match text.trim_end_matches('%').parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
        _ => Err(format!("`{text}` is not a percentage such as 10 or 2.5")),
    }
}

/// Runs the benchmark; 0 when done (and within `--max-regression`), 1 when a figure regressed
/// beyond it.
pub fn run(args: BenchArgs) -> Result<u8, CliError> {
    let config = load_config(args.config.as_deref(), Some(args.limits.max_file_bytes))?;
    let cluster: Box<dyn ClusterView> = match &args.cluster {
        Some(path) => Box::new(load_snapshot(path, Some(args.limits.max_file_bytes))?),
        None => Box::new(Snapshot::dev()),
    };
    let pipeline = Pipeline::from_config(&config);
    // The baseline is read before the (long) measurement, so a wrong path fails at once.
    let baseline = match &args.compare {
        Some(path) => Some(read_baseline(path)?),
        None => None,
    };

    let inputs = read_inputs(&args)?;
    let plan = plan(&inputs, &args, &pipeline, cluster.as_ref());
    if plan.reviews.is_empty() {
        return Err(CliError::Usage(format!(
            "no usable review in {}{}",
            paths_label(&args.paths),
            plan.unusable_note()
        )));
    }

    let names: Vec<String> = pipeline
        .policy_names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let mut timings = PolicyTimings::default();
    for _ in 0..args.warmup {
        for review in &plan.reviews {
            measure(review, &pipeline, cluster.as_ref(), &mut timings, None);
        }
    }
    let mut stats = Stats::new(names.len());
    let started = Instant::now();
    for _ in 0..args.iterations {
        for review in &plan.reviews {
            measure(
                review,
                &pipeline,
                cluster.as_ref(),
                &mut timings,
                Some(&mut stats),
            );
        }
    }
    let elapsed = started.elapsed();

    let mut report = Report::new(&args, &plan, &names, &stats, elapsed);
    if let (Some(baseline), Some(path)) = (&baseline, &args.compare) {
        report.comparison = Some(compare(&report, baseline, path, args.max_regression));
    }
    if let Some(path) = &args.save {
        let mut saved = report.clone();
        saved.comparison = None;
        let text = serde_json::to_string_pretty(&saved).map_err(|err| CliError::File {
            action: "writing",
            path: path.clone(),
            source: std::io::Error::other(err),
        })?;
        std::fs::write(path, text + "\n").map_err(|source| CliError::File {
            action: "writing",
            path: path.clone(),
            source,
        })?;
    }

    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let written = match args.output {
        BenchOutput::Json => serde_json::to_writer_pretty(&mut stdout, &report)
            .map_err(std::io::Error::other)
            .and_then(|()| writeln!(stdout)),
        BenchOutput::Text => write_text(&mut stdout, &report),
    }
    .and_then(|()| stdout.flush());
    if let Err(err) = written
        && err.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("error: writing the output: {err}");
    }
    if args.output == BenchOutput::Json {
        // The summary line a person would read first, where it does not upset the JSON.
        eprintln!("{}", report.headline());
    }

    let regressions = report
        .comparison
        .as_ref()
        .map(|c| c.regressions.as_slice())
        .unwrap_or_default();
    if regressions.is_empty() {
        return Ok(EXIT_OK);
    }
    let limit = args.max_regression.unwrap_or_default();
    for regression in regressions {
        eprintln!("error: regressed by more than {limit}%: {regression}");
    }
    Ok(EXIT_FAILURE)
}

/// `2 paths` or the path itself, for messages.
fn paths_label(paths: &[PathBuf]) -> String {
    match paths {
        [one] => one.display().to_string(),
        many => format!("{} paths", many.len()),
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs: as `kadmit replay` reads them.

/// The text of one input, or why it could not be read.
struct InputText {
    /// The path as given (or `-`), for sources and messages.
    shown: String,
    /// What generated requests are named after.
    stem: String,
    format: TextFormat,
    text: Result<String, String>,
}

/// Reads every input: `-` is standard input, directories are searched as `kadmit replay`
/// searches them. An input that cannot be read is kept (as an unusable document), not fatal.
fn read_inputs(args: &BenchArgs) -> Result<Vec<InputText>, CliError> {
    let mut files = Vec::new();
    let mut texts = Vec::new();
    for path in &args.paths {
        if path.as_os_str() == "-" {
            texts.push(InputText {
                shown: "-".to_owned(),
                stem: "stdin".to_owned(),
                format: TextFormat::Detect,
                text: inputs::read_stdin(args.limits.max_file_bytes)
                    .map_err(|error| format!("standard input: {error}")),
            });
        } else {
            inputs::collect(path, REPLAY_EXTENSIONS, &mut files);
        }
    }
    for file in files {
        let (path, text) = match file {
            Found::File(path) => {
                let text = inputs::read_file(&path, args.limits.max_file_bytes);
                (path, text)
            }
            Found::Unreadable(path, why) => (path, Err(why)),
        };
        texts.push(InputText {
            shown: path.display().to_string(),
            stem: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "input".to_owned()),
            format: TextFormat::from_file_name(&path.to_string_lossy()),
            text,
        });
    }
    if texts.is_empty() {
        return Err(CliError::Usage(format!(
            "no *.json, *.jsonl, *.yaml or *.yml files found in {}",
            paths_label(&args.paths)
        )));
    }
    Ok(texts)
}

// ---------------------------------------------------------------------------------------------
// The plan: each usable review as the bytes each endpoint receives.

/// One review as the webhook calls it receives.
struct Planned {
    /// One call per endpoint the review reaches, in order: `/mutate` then `/validate` on the
    /// mutated object for [`Route::Both`] (no `/validate` when mutation denies, as replay).
    calls: Vec<(Endpoint, Vec<u8>)>,
}

/// Everything measured, and what was left out.
struct Plan {
    reviews: Vec<Planned>,
    /// Inputs read (files and standard input).
    inputs: usize,
    /// Documents (and `List` items) seen, usable or not.
    documents: usize,
    /// Documents that are not usable reviews.
    unusable: usize,
    /// The first of them: `source: error`.
    first_unusable: Option<String>,
    /// Which endpoints the reviews went to, for the headline.
    route: &'static str,
}

impl Plan {
    fn reject(&mut self, source: &str, error: impl std::fmt::Display) {
        self.documents += 1;
        self.unusable += 1;
        if self.first_unusable.is_none() {
            self.first_unusable = Some(format!("{source}: {error}"));
        }
    }

    /// ` (3 documents unusable; first: x.json:4: ...)`, or nothing.
    fn unusable_note(&self) -> String {
        match (&self.first_unusable, self.unusable) {
            (Some(first), 1) => format!(" (1 document unusable: {first})"),
            (Some(first), n) => format!(" ({n} documents unusable; first: {first})"),
            (None, _) => String::new(),
        }
    }
}

/// Decodes every document as `kadmit replay` does and turns each usable review into the
/// bytes of the calls it makes.
fn plan(
    inputs: &[InputText],
    args: &BenchArgs,
    pipeline: &Pipeline,
    cluster: &dyn ClusterView,
) -> Plan {
    let mut plan = Plan {
        reviews: Vec::new(),
        inputs: inputs.len(),
        documents: 0,
        unusable: 0,
        first_unusable: None,
        route: args
            .endpoint
            .map_or("recorded endpoint, else both", |e| Route::from(e).as_str()),
    };
    for input in inputs {
        let text = match &input.text {
            Ok(text) => text,
            Err(err) => {
                plan.reject(&input.shown, err);
                continue;
            }
        };
        let always_line = input.format == TextFormat::JsonLines;
        let mut documents = replay::documents(text, input.format).peekable();
        let mut ordinal = 0;
        while let Some(document) = documents.next() {
            ordinal += 1;
            // Named as replay names them: the path alone for a file of one document.
            let single = ordinal == 1 && documents.peek().is_none() && !always_line;
            let source = if single {
                input.shown.clone()
            } else {
                format!("{}:{}", input.shown, document.line)
            };
            let value = match document.value {
                Ok(value) => value,
                Err(err) => {
                    plan.reject(&source, err);
                    continue;
                }
            };
            let origin = Origin {
                stem: &input.stem,
                ordinal,
                namespace: args.namespace.as_deref(),
            };
            for Decoded { item, result } in replay::decode_document(value, &origin) {
                let source = match item {
                    Some(item) => format!("{source}[{item}]"),
                    None => source.clone(),
                };
                let replayable = match result {
                    Ok(replayable) => replayable,
                    Err(err) => {
                        plan.reject(&source, err);
                        continue;
                    }
                };
                let route = args
                    .endpoint
                    .map(Route::from)
                    .or(replayable.endpoint.map(Route::from))
                    .unwrap_or(Route::Both);
                match calls(&replayable.review, route, pipeline, cluster) {
                    Ok(calls) => {
                        plan.documents += 1;
                        plan.reviews.push(Planned { calls });
                    }
                    Err(err) => plan.reject(&source, err),
                }
            }
        }
    }
    plan
}

/// The calls `review` makes on `route`, as bytes. For [`Route::Both`], mutation is evaluated
/// once here to find the object `/validate` receives (the API server applies the patch; that
/// is not the webhook's cost, so it is not timed).
fn calls(
    review: &Review,
    route: Route,
    pipeline: &Pipeline,
    cluster: &dyn ClusterView,
) -> Result<Vec<(Endpoint, Vec<u8>)>, String> {
    let bytes = encode(review)?;
    Ok(match route {
        Route::Mutate => vec![(Endpoint::Mutate, bytes)],
        Route::Validate => vec![(Endpoint::Validate, bytes)],
        Route::Both => {
            let mutated = pipeline.evaluate(Endpoint::Mutate, review, cluster);
            if !mutated.response.allowed {
                // A mutating webhook's denial ends the request: validation never runs.
                vec![(Endpoint::Mutate, bytes)]
            } else if mutated.response.patch.is_empty() {
                vec![
                    (Endpoint::Mutate, bytes.clone()),
                    (Endpoint::Validate, bytes),
                ]
            } else {
                match apply_patch(review, &mutated.response.patch) {
                    Ok(patched) => {
                        let validate = encode(&patched)?;
                        vec![(Endpoint::Mutate, bytes), (Endpoint::Validate, validate)]
                    }
                    // Replay answers 500 at /mutate: the API server fails such a request.
                    Err(_) => vec![(Endpoint::Mutate, bytes)],
                }
            }
        }
    })
}

/// The `AdmissionReview` the API server would send for `review`, checked to decode back.
///
/// Documents reach us parsed (YAML, capture records, manifests made into requests), so the
/// bytes are re-encoded from the decoded review: every field kadmit reads, none it ignores.
fn encode(review: &Review) -> Result<Vec<u8>, String> {
    let request = &review.request;
    let wire = WireReview {
        api_version: review.version.api_version(),
        kind: "AdmissionReview",
        request: WireRequest {
            uid: &request.uid,
            kind: WireGvk::from(&request.kind),
            resource: WireGvr::from(&request.resource),
            sub_resource: request.sub_resource.as_deref(),
            name: request.name.as_deref(),
            namespace: request.namespace.as_deref(),
            operation: request.operation.as_str(),
            user_info: WireUser {
                username: &request.user_info.username,
                uid: &request.user_info.uid,
                groups: &request.user_info.groups,
            },
            object: request.object.as_deref(),
            old_object: request.old_object.as_deref(),
            dry_run: request.dry_run,
        },
    };
    let bytes = serde_json::to_vec(&wire).map_err(|e| format!("cannot encode the review: {e}"))?;
    match Review::from_slice(&bytes) {
        Ok(_) => Ok(bytes),
        Err(err) => Err(format!("the re-encoded review does not decode: {err}")),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireReview<'a> {
    api_version: &'static str,
    kind: &'static str,
    request: WireRequest<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireRequest<'a> {
    uid: &'a str,
    kind: WireGvk<'a>,
    resource: WireGvr<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub_resource: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    operation: &'static str,
    user_info: WireUser<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    object: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    old_object: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dry_run: Option<bool>,
}

#[derive(Serialize)]
struct WireGvk<'a> {
    group: &'a str,
    version: &'a str,
    kind: &'a str,
}

impl<'a> From<&'a GroupVersionKind> for WireGvk<'a> {
    fn from(gvk: &'a GroupVersionKind) -> Self {
        WireGvk {
            group: &gvk.group,
            version: &gvk.version,
            kind: &gvk.kind,
        }
    }
}

#[derive(Serialize)]
struct WireGvr<'a> {
    group: &'a str,
    version: &'a str,
    resource: &'a str,
}

impl<'a> From<&'a GroupVersionResource> for WireGvr<'a> {
    fn from(gvr: &'a GroupVersionResource) -> Self {
        WireGvr {
            group: &gvr.group,
            version: &gvr.version,
            resource: &gvr.resource,
        }
    }
}

#[derive(Serialize)]
struct WireUser<'a> {
    username: &'a str,
    uid: &'a str,
    groups: &'a [String],
}

// ---------------------------------------------------------------------------------------------
// Measuring.

/// Decodes and evaluates each call of `review` as the server would, recording into `stats`.
fn measure(
    review: &Planned,
    pipeline: &Pipeline,
    cluster: &dyn ClusterView,
    timings: &mut PolicyTimings,
    mut stats: Option<&mut Stats>,
) {
    let mut review_total = Duration::ZERO;
    for (endpoint, bytes) in &review.calls {
        let started = Instant::now();
        let envelope;
        {
            let decoded = Review::from_slice_for(bytes, *endpoint);
            envelope = started.elapsed();
            // Checked to decode when planned; a failure would be answered 400, as the server
            // does, and costs what it costs.
            if let Ok(decoded) = decoded {
                let decision = pipeline.evaluate_timed(*endpoint, &decoded, cluster, timings);
                std::hint::black_box(decision);
            } else {
                timings.decode = Duration::ZERO;
                timings.policies.clear();
            }
        }
        let total = started.elapsed();
        review_total += total;
        if let Some(stats) = stats.as_deref_mut() {
            let series = stats.endpoint(*endpoint);
            series.decode.record(envelope + timings.decode);
            for (slot, took) in series.policies.iter_mut().zip(&timings.policies) {
                if let Some(took) = took {
                    slot.record(*took);
                }
            }
            series.total.record(total);
            stats.calls += 1;
        }
    }
    if let Some(stats) = stats {
        stats.review.record(review_total);
        stats.reviews += 1;
    }
}

/// All the histograms of a run.
struct Stats {
    mutate: EndpointStats,
    validate: EndpointStats,
    /// Per review: the sum of its calls.
    review: Histogram,
    reviews: u64,
    calls: u64,
}

/// One endpoint's histograms.
struct EndpointStats {
    /// `Review::from_slice` plus decoding `object` and `oldObject`.
    decode: Histogram,
    /// In pipeline order.
    policies: Vec<Histogram>,
    /// Decode plus every policy plus the pipeline's own work: the call.
    total: Histogram,
}

impl EndpointStats {
    fn new(policies: usize) -> EndpointStats {
        EndpointStats {
            decode: Histogram::default(),
            policies: (0..policies).map(|_| Histogram::default()).collect(),
            total: Histogram::default(),
        }
    }
}

impl Stats {
    fn new(policies: usize) -> Stats {
        Stats {
            mutate: EndpointStats::new(policies),
            validate: EndpointStats::new(policies),
            review: Histogram::default(),
            reviews: 0,
            calls: 0,
        }
    }

    fn endpoint(&mut self, endpoint: Endpoint) -> &mut EndpointStats {
        match endpoint {
            Endpoint::Mutate => &mut self.mutate,
            Endpoint::Validate => &mut self.validate,
        }
    }
}

/// Sub-buckets per power of two: 2^7 = 128, so a bucket is under 0.8 % wide and its middle
/// within 0.4 % of any value in it.
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;

/// A log-linear histogram of nanoseconds: exact below 128 ns, then 128 buckets per doubling.
#[derive(Debug, Default)]
struct Histogram {
    /// Grown on demand to the highest bucket used.
    counts: Vec<u64>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Histogram {
    fn record(&mut self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let index = bucket(ns);
        if self.counts.len() <= index {
            self.counts.resize(index + 1, 0);
        }
        if let Some(slot) = self.counts.get_mut(index) {
            *slot += 1;
        }
        self.min = if self.count == 0 {
            ns
        } else {
            self.min.min(ns)
        };
        self.max = self.max.max(ns);
        self.count += 1;
        self.sum += u128::from(ns);
    }

    /// The nearest-rank `q` quantile, as the middle of its bucket (clamped to the range seen).
    fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        // Ranks are at most u64::MAX; the float product is rounded up and clamped.
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return middle(index).clamp(self.min, self.max);
            }
        }
        self.max
    }

    fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }
}

/// The bucket of `ns`.
fn bucket(ns: u64) -> usize {
    if ns < SUB {
        return ns as usize;
    }
    let shift = 63 - ns.leading_zeros() - SUB_BITS;
    let mantissa = ns >> shift;
    (u64::from(shift + 1) * SUB + (mantissa - SUB)) as usize
}

/// The middle of bucket `index`.
fn middle(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB {
        return index;
    }
    let shift = index / SUB - 1;
    let low = (SUB + index % SUB) << shift;
    low + ((1u64 << shift) >> 1)
}

// ---------------------------------------------------------------------------------------------
// The report: the JSON object, the baseline, and the text table.

/// The results, as `--output json` prints them and `--save` writes them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    /// The kadmit version that measured.
    kadmit: String,
    /// `--config`, if given.
    config: Option<String>,
    /// `--cluster`, if given.
    cluster: Option<String>,
    /// `mutate`, `validate`, `both`, or `recorded endpoint, else both` (no `--endpoint`).
    route: String,
    inputs: InputSummary,
    iterations: u64,
    warmup: u64,
    /// Always 1: the reviews are evaluated one after the other on one thread.
    threads: u32,
    /// What the machine offers (`std::thread::available_parallelism`), for context.
    available_parallelism: usize,
    /// Wall time of the measured iterations.
    elapsed_seconds: f64,
    throughput: Throughput,
    /// Per endpoint and policy, then per endpoint `total`, then `review`/`total` when reviews
    /// reached both endpoints.
    figures: Vec<Figure>,
    /// With `--compare`; never saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    comparison: Option<Comparison>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InputSummary {
    /// PATH arguments as given.
    paths: Vec<String>,
    /// Files (and standard input) read.
    files: usize,
    /// Documents (and `List` items) found.
    documents: usize,
    /// Usable reviews: the ones measured.
    reviews: usize,
    /// Documents that are not usable reviews.
    unusable: usize,
    /// The first of them, `source: error`.
    first_unusable: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Throughput {
    /// Reviews per second over the measured iterations (a review is all its calls).
    reviews_per_second: f64,
    /// Webhook calls (`/mutate` or `/validate`) per second.
    calls_per_second: f64,
}

/// One row of the table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Figure {
    /// `mutate`, `validate`, or `review` (a review's calls together).
    endpoint: String,
    /// `decode`, a policy's name, or `total`.
    policy: String,
    /// Measurements behind the figure.
    samples: u64,
    p50_ns: u64,
    p95_ns: u64,
    p99_ns: u64,
    mean_ns: f64,
}

/// `--compare`'s result.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Comparison {
    /// The baseline file.
    baseline: String,
    /// The baseline's kadmit version.
    baseline_kadmit: String,
    max_regression_percent: Option<f64>,
    /// Each figure present in both, with now/baseline.
    rows: Vec<ComparedFigure>,
    /// The figures beyond `--max-regression`, described.
    regressions: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ComparedFigure {
    endpoint: String,
    policy: String,
    /// `p50`, `p95`, `p99`, `mean`, or `reviewsPerSecond` (endpoint and policy `throughput`).
    figure: String,
    baseline: f64,
    now: f64,
    /// now / baseline; absent when the baseline is 0.
    ratio: Option<f64>,
    /// Whether `--max-regression` applies (p50 and throughput).
    gated: bool,
    regressed: bool,
}

impl Report {
    fn new(
        args: &BenchArgs,
        plan: &Plan,
        names: &[String],
        stats: &Stats,
        elapsed: Duration,
    ) -> Report {
        let mut figures = Vec::new();
        let mut push = |endpoint: &str, policy: &str, histogram: &Histogram| {
            if histogram.count > 0 {
                figures.push(Figure {
                    endpoint: endpoint.to_owned(),
                    policy: policy.to_owned(),
                    samples: histogram.count,
                    p50_ns: histogram.quantile(0.50),
                    p95_ns: histogram.quantile(0.95),
                    p99_ns: histogram.quantile(0.99),
                    mean_ns: histogram.mean(),
                });
            }
        };
        let mut endpoints = 0;
        for (label, series) in [("mutate", &stats.mutate), ("validate", &stats.validate)] {
            if series.total.count == 0 {
                continue;
            }
            endpoints += 1;
            push(label, "decode", &series.decode);
            for (name, histogram) in names.iter().zip(&series.policies) {
                push(label, name, histogram);
            }
            push(label, "total", &series.total);
        }
        if endpoints > 1 {
            push("review", "total", &stats.review);
        }
        let seconds = elapsed.as_secs_f64();
        let per_second = |n: u64| {
            if seconds > 0.0 {
                n as f64 / seconds
            } else {
                0.0
            }
        };
        Report {
            kadmit: env!("CARGO_PKG_VERSION").to_owned(),
            config: args.config.as_ref().map(|p| p.display().to_string()),
            cluster: args.cluster.as_ref().map(|p| p.display().to_string()),
            route: plan.route.to_owned(),
            inputs: InputSummary {
                paths: args.paths.iter().map(|p| p.display().to_string()).collect(),
                files: plan.inputs,
                documents: plan.documents,
                reviews: plan.reviews.len(),
                unusable: plan.unusable,
                first_unusable: plan.first_unusable.clone(),
            },
            iterations: args.iterations,
            warmup: args.warmup,
            threads: 1,
            available_parallelism: std::thread::available_parallelism().map_or(1, |n| n.get()),
            elapsed_seconds: seconds,
            throughput: Throughput {
                reviews_per_second: per_second(stats.reviews),
                calls_per_second: per_second(stats.calls),
            },
            figures,
            comparison: None,
        }
    }

    /// `kadmit bench: 103 reviews from 2 paths (...), 100 iterations after 10 warm-up, ...`
    fn headline(&self) -> String {
        let inputs = &self.inputs;
        let unusable = match (&inputs.first_unusable, inputs.unusable) {
            (Some(first), 1) => format!(" (1 document unusable: {first})"),
            (Some(first), n) => format!(" ({n} documents unusable; first: {first})"),
            (None, _) => String::new(),
        };
        let from = match inputs.paths.as_slice() {
            [one] => one.clone(),
            many => format!("{} paths", many.len()),
        };
        let plural = |n: u64, word: &str| {
            if n == 1 {
                format!("1 {word}")
            } else {
                format!("{n} {word}s")
            }
        };
        format!(
            "kadmit bench: {} from {from}{unusable}, {} after {} warm-up, \
             1 thread ({} available), endpoints: {}",
            plural(inputs.reviews as u64, "review"),
            plural(self.iterations, "iteration"),
            self.warmup,
            self.available_parallelism,
            self.route
        )
    }
}

/// Reads a baseline written by `--save` or `--output json`.
fn read_baseline(path: &Path) -> Result<Report, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::File {
        action: "reading",
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|err| {
        CliError::Usage(format!(
            "{}: not a kadmit bench baseline (written by --save or --output json): {err}",
            path.display()
        ))
    })
}

/// Each figure beside the baseline's; with `max_regression`, which p50s and whether the
/// throughput got worse by more than that many percent.
fn compare(
    report: &Report,
    baseline: &Report,
    path: &Path,
    max_regression: Option<f64>,
) -> Comparison {
    let limit = max_regression.map(|pct| 1.0 + pct / 100.0);
    let base: BTreeMap<(&str, &str), &Figure> = baseline
        .figures
        .iter()
        .map(|f| ((f.endpoint.as_str(), f.policy.as_str()), f))
        .collect();
    let mut rows = Vec::new();
    let mut regressions = Vec::new();
    let ratio = |now: f64, base: f64| (base > 0.0).then(|| now / base);
    for figure in &report.figures {
        let Some(old) = base.get(&(figure.endpoint.as_str(), figure.policy.as_str())) else {
            continue;
        };
        let pairs = [
            ("p50", figure.p50_ns as f64, old.p50_ns as f64),
            ("p95", figure.p95_ns as f64, old.p95_ns as f64),
            ("p99", figure.p99_ns as f64, old.p99_ns as f64),
            ("mean", figure.mean_ns, old.mean_ns),
        ];
        for (name, now, then) in pairs {
            let gated = name == "p50";
            // Time: worse is higher.
            let regressed = gated && limit.is_some_and(|limit| now > then * limit);
            if regressed {
                regressions.push(format!(
                    "{} {} {name} {} vs {} in the baseline ({})",
                    figure.endpoint,
                    figure.policy,
                    human(now),
                    human(then),
                    ratio_text(ratio(now, then)),
                ));
            }
            rows.push(ComparedFigure {
                endpoint: figure.endpoint.clone(),
                policy: figure.policy.clone(),
                figure: name.to_owned(),
                baseline: then,
                now,
                ratio: ratio(now, then),
                gated,
                regressed,
            });
        }
    }
    let now = report.throughput.reviews_per_second;
    let then = baseline.throughput.reviews_per_second;
    // Throughput: worse is lower; as time per review, now's is then/now times the baseline's.
    let regressed = limit.is_some_and(|limit| then > now * limit);
    if regressed {
        regressions.push(format!(
            "throughput {} reviews/s vs {} in the baseline ({})",
            thousands(now),
            thousands(then),
            ratio_text(ratio(now, then)),
        ));
    }
    rows.push(ComparedFigure {
        endpoint: "throughput".to_owned(),
        policy: "throughput".to_owned(),
        figure: "reviewsPerSecond".to_owned(),
        baseline: then,
        now,
        ratio: ratio(now, then),
        gated: true,
        regressed,
    });
    Comparison {
        baseline: path.display().to_string(),
        baseline_kadmit: baseline.kadmit.clone(),
        max_regression_percent: max_regression,
        rows,
        regressions,
    }
}

/// `×1.02`, or `×?` when the baseline's figure is 0.
fn ratio_text(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "×?".to_owned(), |r| format!("×{r:.2}"))
}

/// Nanoseconds for people: `850ns`, `18.2µs`, `1.23ms`, `2.50s`.
fn human(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.0}ns")
    } else if ns < 1_000_000.0 {
        format!("{:.1}µs", ns / 1_000.0)
    } else if ns < 1_000_000_000.0 {
        format!("{:.2}ms", ns / 1_000_000.0)
    } else {
        format!("{:.2}s", ns / 1_000_000_000.0)
    }
}

/// `12 345`: whole units with a space between thousands.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (index, c) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn write_text(out: &mut impl std::io::Write, report: &Report) -> std::io::Result<()> {
    writeln!(out, "{}", report.headline())?;
    let width = report
        .figures
        .iter()
        .map(|f| f.policy.chars().count())
        .max()
        .unwrap_or(6)
        .max(18);
    writeln!(
        out,
        "{:<8}  {:<width$}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}",
        "endpoint", "policy", "p50", "p95", "p99", "mean", "samples"
    )?;
    for f in &report.figures {
        writeln!(
            out,
            "{:<8}  {:<width$}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}",
            f.endpoint,
            f.policy,
            human(f.p50_ns as f64),
            human(f.p95_ns as f64),
            human(f.p99_ns as f64),
            human(f.mean_ns),
            f.samples
        )?;
    }
    let calls = if report.throughput.calls_per_second > report.throughput.reviews_per_second {
        format!(
            ", {} webhook calls/s",
            thousands(report.throughput.calls_per_second)
        )
    } else {
        String::new()
    };
    writeln!(
        out,
        "throughput: {} reviews/s{calls} (one thread, {:.2}s measured)",
        thousands(report.throughput.reviews_per_second),
        report.elapsed_seconds
    )?;
    if let Some(comparison) = &report.comparison {
        write_comparison(out, comparison, width)?;
    }
    Ok(())
}

fn write_comparison(
    out: &mut impl std::io::Write,
    comparison: &Comparison,
    width: usize,
) -> std::io::Result<()> {
    writeln!(
        out,
        "\ncompared with {} (kadmit {}): now/baseline ×ratio",
        comparison.baseline, comparison.baseline_kadmit
    )?;
    writeln!(
        out,
        "{:<8}  {:<width$}  {:<24}  {:<24}  {:<24}  mean",
        "endpoint", "policy", "p50", "p95", "p99"
    )?;
    // Rows come four to a figure (p50, p95, p99, mean), then the throughput.
    let mut line = String::new();
    for row in &comparison.rows {
        if row.figure == "reviewsPerSecond" {
            writeln!(
                out,
                "throughput: {}/{} reviews/s {}{}",
                thousands(row.now),
                thousands(row.baseline),
                ratio_text(row.ratio),
                if row.regressed { "  REGRESSED" } else { "" }
            )?;
            continue;
        }
        if row.figure == "p50" {
            line.clear();
            let _ = write!(line, "{:<8}  {:<width$}", row.endpoint, row.policy);
        }
        let cell = format!(
            "{}/{} {}{}",
            human(row.now),
            human(row.baseline),
            ratio_text(row.ratio),
            if row.regressed { "!" } else { "" }
        );
        let _ = write!(line, "  {cell:<24}");
        if row.figure == "mean" {
            writeln!(out, "{}", line.trim_end())?;
        }
    }
    match (
        comparison.max_regression_percent,
        comparison.regressions.len(),
    ) {
        (Some(pct), 0) => writeln!(out, "no p50 or throughput worse by more than {pct}%"),
        (Some(pct), n) => writeln!(
            out,
            "{n} figures worse by more than {pct}% (marked !): {}",
            comparison.regressions.join("; ")
        ),
        (None, _) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for ns in (0..100_000u64).chain([1 << 40, u64::MAX / 2, u64::MAX]) {
            let index = bucket(ns);
            assert!(index >= last, "{ns}");
            last = index;
            let mid = middle(index) as f64;
            assert!(
                (mid - ns as f64).abs() <= (ns as f64) * 0.004 + 0.5,
                "{ns} → {mid}"
            );
        }
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let mut h = Histogram::default();
        for ns in 1..=100u64 {
            h.record(Duration::from_nanos(ns));
        }
        assert_eq!(h.quantile(0.5), 50);
        assert_eq!(h.quantile(0.99), 99);
        assert_eq!(h.quantile(1.0), 100);
        assert!((h.mean() - 50.5).abs() < 1e-9);
    }

    #[test]
    fn numbers_for_people() {
        assert_eq!(thousands(12345.4), "12 345");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1_000_000.0), "1 000 000");
        assert_eq!(human(850.0), "850ns");
        assert_eq!(human(18_240.0), "18.2µs");
        assert_eq!(human(1_234_000.0), "1.23ms");
    }
}
