//! Capture of admission traffic (`kadmit serve --capture-dir`): each sampled review and the
//! answer it got, one JSON object per line, in rotating files that `kadmit replay` reads back.
//!
//! Capturing must never slow down or fail an admission. The handler pays for one hash of the
//! uid (sampling), a reference-count clone of the request and answer bytes and a `try_send` on a
//! bounded queue; when the queue is full the record is dropped and counted. A dedicated thread
//! parses, redacts, encodes and appends the records, rotates the files by size and deletes the
//! oldest beyond the count limit. Write errors (a full disk, a missing directory) drop the record,
//! are counted and are logged once per kind of error until a write succeeds again.
//!
//! A line: `{"time": "<RFC 3339, UTC>", "endpoint": "mutate"|"validate", "dryRun": bool,
//! "review": <the AdmissionReview as received, redacted>, "response": <the AdmissionReview sent
//! back, byte for byte>}`. Files: `kadmit-capture-<UTC timestamp>-<seq>.jsonl`.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use kadmit_core::Endpoint;
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::telemetry::metrics::Metrics;

/// What redacted values are replaced with.
pub const REDACTED: &str = "<redacted>";
/// Capture file names start with this.
pub const FILE_PREFIX: &str = "kadmit-capture-";
/// Capture file names end with this.
pub const FILE_SUFFIX: &str = ".jsonl";
/// Default `--capture-max-file-bytes`: 64 MiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// Default `--capture-max-files`.
pub const DEFAULT_MAX_FILES: usize = 10;
/// Records waiting for the writer, at most.
pub const DEFAULT_QUEUE_RECORDS: usize = 1024;
/// Request and answer bytes waiting for the writer, at most (large bodies fill it sooner).
pub const DEFAULT_QUEUE_BYTES: usize = 64 * 1024 * 1024;

/// `kadmit_capture_dropped_total` reason: the writer was behind and the queue was full.
pub const DROPPED_QUEUE_FULL: &str = "queue_full";
/// `kadmit_capture_dropped_total` reason: the record could not be written (disk full, …).
pub const DROPPED_WRITE_ERROR: &str = "write_error";
/// `kadmit_capture_dropped_total` reason: one record is larger than `--capture-max-file-bytes`.
pub const DROPPED_TOO_LARGE: &str = "too_large";
/// `kadmit_capture_dropped_total` reason: the review is nested deeper than [`MAX_DEPTH`].
pub const DROPPED_TOO_DEEP: &str = "too_deep";

/// How deeply nested a review may be and still be captured. serde_json's recursion limit (128)
/// admits 127 levels of arrays and objects; the writer parses the review with it to redact it,
/// and `kadmit replay` parses the capture line, one level deeper than the review. Deeper reviews
/// are answered as any other and dropped from capture, counted as [`DROPPED_TOO_DEEP`], rather
/// than written as a line replay cannot read.
///
/// Parsing deeper would recurse on the writer thread's stack as deep as the client nests (a
/// body of `[` is nested as deep as it is long), and the record could not be replayed anyway.
/// Real objects are far shallower: a pod is about ten levels deep.
pub const MAX_DEPTH: usize = 126;

/// How capture is set up.
#[derive(Debug, Clone)]
pub struct CaptureOptions {
    /// Where the files go; created when missing.
    pub dir: PathBuf,
    /// A file is closed and a new one started before it would grow beyond this.
    pub max_file_bytes: u64,
    /// Capture files kept in `dir` (the one being written included); older ones are deleted.
    pub max_files: usize,
    /// Fraction of reviews captured, from 0.0 to 1.0 (by a hash of the request uid).
    pub sample_rate: f64,
    /// Fields of `object` and `oldObject` replaced by `"<redacted>"`, for every kind.
    pub redact: Vec<RedactPath>,
    /// Records waiting for the writer, at most.
    pub queue_records: usize,
    /// Bytes waiting for the writer, at most.
    pub queue_bytes: usize,
}

impl CaptureOptions {
    /// Capture everything into `dir` with the default limits.
    pub fn new(dir: impl Into<PathBuf>) -> CaptureOptions {
        CaptureOptions {
            dir: dir.into(),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_files: DEFAULT_MAX_FILES,
            sample_rate: 1.0,
            redact: Vec::new(),
            queue_records: DEFAULT_QUEUE_RECORDS,
            queue_bytes: DEFAULT_QUEUE_BYTES,
        }
    }
}

/// Parses `--capture-sample-rate`: a number from 0.0 to 1.0.
pub fn parse_sample_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!(
            "`{text}` is not a sample rate: use a number from 0.0 (nothing) to 1.0 (everything)"
        )),
    }
}

/// Which reviews are captured: those whose uid hashes below the rate.
///
/// Deterministic and stateless: the same uid is always sampled the same way, so a request the
/// API server sends to both `/mutate` and `/validate` (same uid) is captured at both or neither,
/// on every replica.
#[derive(Debug, Clone, Copy)]
pub struct Sampler {
    /// Sampled when the hash is below; `None` samples everything.
    threshold: Option<u64>,
}

impl Sampler {
    /// A sampler keeping about `rate` (0.0 to 1.0) of the uids.
    pub fn new(rate: f64) -> Sampler {
        if rate >= 1.0 {
            Sampler { threshold: None }
        } else if rate > 0.0 {
            // 2^64 * rate; the cast saturates.
            Sampler {
                threshold: Some((rate * 18_446_744_073_709_551_616.0) as u64),
            }
        } else {
            Sampler { threshold: Some(0) }
        }
    }

    /// Whether the review with this uid is captured.
    pub fn sampled(&self, uid: &str) -> bool {
        match self.threshold {
            None => true,
            Some(0) => false,
            Some(threshold) => uid_hash(uid) < threshold,
        }
    }
}

/// FNV-1a over the uid, then a 64-bit finalizer so that similar uids spread evenly.
fn uid_hash(uid: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in uid.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// A field to redact inside `object` and `oldObject`: dotted (`metadata.annotations.token`) or
/// a JSON Pointer (`/metadata/annotations/example.com~1token`, for keys holding dots or
/// slashes). A segment `*` matches every key of an object or element of an array; a number
/// indexes an array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedactPath {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Any,
}

impl RedactPath {
    /// Parses a dotted path or a JSON Pointer.
    pub fn parse(text: &str) -> Result<RedactPath, String> {
        let trimmed = text.trim();
        let raw: Vec<String> = if let Some(pointer) = trimmed.strip_prefix('/') {
            pointer
                .split('/')
                .map(unescape_pointer)
                .collect::<Result<_, _>>()
                .map_err(|why| format!("`{text}` is not a JSON Pointer: {why}"))?
        } else {
            trimmed.split('.').map(str::to_owned).collect()
        };
        if raw.iter().any(String::is_empty) {
            return Err(format!(
                "`{text}` has an empty segment: write a dotted path such as \
                 metadata.annotations.token, or a JSON Pointer such as \
                 /metadata/annotations/example.com~1token for keys with dots"
            ));
        }
        let segments = raw
            .into_iter()
            .map(|s| {
                if s == "*" {
                    Segment::Any
                } else {
                    Segment::Key(s)
                }
            })
            .collect();
        Ok(RedactPath {
            text: trimmed.to_owned(),
            segments,
        })
    }

    /// Replaces what the path names in `value` (when present) by `"<redacted>"`.
    pub fn apply(&self, value: &mut Value) {
        redact_at(value, &self.segments);
    }
}

impl fmt::Display for RedactPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn unescape_pointer(segment: &str) -> Result<String, String> {
    let mut out = String::with_capacity(segment.len());
    let mut chars = segment.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return Err("`~` must be followed by 0 or 1".to_owned()),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

fn redact_at(value: &mut Value, segments: &[Segment]) {
    let Some((first, rest)) = segments.split_first() else {
        *value = Value::String(REDACTED.to_owned());
        return;
    };
    match (first, value) {
        (Segment::Any, Value::Object(map)) => map.values_mut().for_each(|v| redact_at(v, rest)),
        (Segment::Any, Value::Array(items)) => items.iter_mut().for_each(|v| redact_at(v, rest)),
        (Segment::Key(key), Value::Object(map)) => {
            if let Some(v) = map.get_mut(key) {
                redact_at(v, rest);
            }
        }
        (Segment::Key(key), Value::Array(items)) => {
            if let Some(v) = key.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                redact_at(v, rest);
            }
        }
        _ => {}
    }
}

/// Redacts a review in place: the `data` and `stringData` values of a core/v1 Secret (keys
/// kept), then the configured paths, in both `request.object` and `request.oldObject`.
pub fn redact_review(review: &mut Value, paths: &[RedactPath]) {
    let Some(request) = review.get_mut("request").and_then(Value::as_object_mut) else {
        return;
    };
    let secret_request =
        is_core_secret(request.get("kind")) || is_core_secret(request.get("requestKind"));
    for key in ["object", "oldObject"] {
        let Some(object) = request.get_mut(key) else {
            continue;
        };
        if secret_request || is_secret_object(object) {
            redact_secret_values(object);
        }
        for path in paths {
            path.apply(object);
        }
    }
}

/// `{"group": "", "version": "v1", "kind": "Secret"}` (the group may be absent).
fn is_core_secret(gvk: Option<&Value>) -> bool {
    gvk.is_some_and(|gvk| {
        gvk.get("kind").and_then(Value::as_str) == Some("Secret")
            && gvk
                .get("group")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
    })
}

/// An object that says it is a core/v1 Secret, whatever the request claims.
fn is_secret_object(object: &Value) -> bool {
    object.get("kind").and_then(Value::as_str) == Some("Secret")
        && object.get("apiVersion").and_then(Value::as_str) == Some("v1")
}

fn redact_secret_values(object: &mut Value) {
    for field in ["data", "stringData"] {
        match object.get_mut(field) {
            Some(Value::Object(map)) => {
                for value in map.values_mut() {
                    *value = Value::String(REDACTED.to_owned());
                }
            }
            // Malformed (not a map): hide it whole.
            Some(value) if !value.is_null() => *value = Value::String(REDACTED.to_owned()),
            _ => {}
        }
    }
}

/// One review and its answer, as the handler hands them over.
struct Record {
    time: SystemTime,
    endpoint: Endpoint,
    dry_run: bool,
    review: Bytes,
    response: Bytes,
}

impl Record {
    fn size(&self) -> usize {
        self.review.len() + self.response.len()
    }
}

enum Message {
    Record(Record),
    /// Answered once everything queued before it has been handled.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The handlers' side of capture: cheap to clone, never blocks.
#[derive(Clone)]
pub struct CaptureHandle {
    shared: Arc<Shared>,
}

struct Shared {
    tx: SyncSender<Message>,
    sampler: Sampler,
    queued_bytes: Arc<AtomicUsize>,
    queue_bytes: usize,
    queue_full_logged: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    dir: PathBuf,
}

impl fmt::Debug for CaptureHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureHandle")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

impl CaptureHandle {
    /// Creates the directory (mode 0700 where it is new) and starts the writer thread.
    ///
    /// Fails when the directory cannot be created or listed, or the thread cannot start;
    /// later write errors only drop records.
    pub fn start(options: CaptureOptions, metrics: Arc<Metrics>) -> io::Result<CaptureHandle> {
        create_dir(&options.dir)?;
        let next_seq = list_capture_files(&options.dir)?
            .last()
            .map_or(0, |f| f.seq.saturating_add(1));
        let (handle, rx, writer_shared) = Self::channel(&options, metrics);
        let mut writer = Writer::new(options, writer_shared, next_seq);
        // The writer logs where the server was started from (the global subscriber in
        // production, a test's own subscriber in tests).
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        std::thread::Builder::new()
            .name("kadmit-capture".to_owned())
            .spawn(move || tracing::dispatcher::with_default(&dispatch, || writer.run(&rx)))?;
        Ok(handle)
    }

    fn channel(
        options: &CaptureOptions,
        metrics: Arc<Metrics>,
    ) -> (CaptureHandle, Receiver<Message>, WriterShared) {
        metrics.capture_init();
        let (tx, rx) = sync_channel(options.queue_records.max(1));
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let queue_full_logged = Arc::new(AtomicBool::new(false));
        let writer_shared = WriterShared {
            metrics: Arc::clone(&metrics),
            queued_bytes: Arc::clone(&queued_bytes),
            queue_full_logged: Arc::clone(&queue_full_logged),
        };
        let handle = CaptureHandle {
            shared: Arc::new(Shared {
                tx,
                sampler: Sampler::new(options.sample_rate),
                queued_bytes,
                queue_bytes: options.queue_bytes.max(1),
                queue_full_logged,
                metrics,
                dir: options.dir.clone(),
            }),
        };
        (handle, rx, writer_shared)
    }

    /// The capture directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Whether the review with this uid is captured (see [`Sampler`]).
    pub fn sampled(&self, uid: &str) -> bool {
        self.shared.sampler.sampled(uid)
    }

    /// Queues a review body and the answer sent for it; drops it (counted) when the writer is
    /// behind. Never blocks.
    pub fn submit(&self, endpoint: Endpoint, dry_run: bool, review: Bytes, response: Bytes) {
        let record = Record {
            time: SystemTime::now(),
            endpoint,
            dry_run,
            review,
            response,
        };
        let size = record.size();
        let shared = &self.shared;
        let before = shared.queued_bytes.fetch_add(size, Ordering::Relaxed);
        // One record larger than the whole budget is still taken when the queue is empty.
        if before > 0 && before.saturating_add(size) > shared.queue_bytes {
            shared.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            self.queue_full();
            return;
        }
        match shared.tx.try_send(Message::Record(record)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                shared.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                self.queue_full();
            }
            Err(TrySendError::Disconnected(_)) => {
                // The writer thread is gone (it only ends when every handle is dropped).
                shared.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                shared.metrics.capture_dropped(DROPPED_WRITE_ERROR);
            }
        }
    }

    fn queue_full(&self) {
        let shared = &self.shared;
        shared.metrics.capture_dropped(DROPPED_QUEUE_FULL);
        if !shared.queue_full_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                dir = %shared.dir.display(),
                "capture queue is full: dropping captures until the writer catches up \
                 (counted in kadmit_capture_dropped_total{{reason=\"queue_full\"}}; logged once \
                 until the queue drains)"
            );
        }
    }

    /// Waits until everything queued so far has been written (or dropped), at most `timeout`.
    /// Returns whether it finished in time.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let mut message = Message::Flush(done_tx);
        loop {
            match self.shared.tx.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) => {
                    if tokio::time::Instant::now() >= deadline {
                        return false;
                    }
                    message = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(TrySendError::Disconnected(_)) => return false,
            }
        }
        matches!(tokio::time::timeout_at(deadline, done_rx).await, Ok(Ok(())))
    }
}

/// What the writer shares with the handles.
struct WriterShared {
    metrics: Arc<Metrics>,
    queued_bytes: Arc<AtomicUsize>,
    queue_full_logged: Arc<AtomicBool>,
}

/// A kind of failure, logged once until a write succeeds again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Problem {
    Open(io::ErrorKind),
    Write(io::ErrorKind),
    Encode,
    TooLarge,
    TooDeep,
    Prune(io::ErrorKind),
}

struct Current {
    file: File,
    path: PathBuf,
    len: u64,
}

/// The writer thread's state.
struct Writer {
    dir: PathBuf,
    max_file_bytes: u64,
    max_files: usize,
    redact: Vec<RedactPath>,
    shared: WriterShared,
    current: Option<Current>,
    next_seq: u64,
    /// Problems logged since the last successful write.
    logged: Vec<Problem>,
    dropped_since_success: u64,
    /// Opens a new capture file (replaced in unit tests to simulate a full disk).
    open: fn(&Path) -> io::Result<File>,
    line: Vec<u8>,
}

#[derive(Serialize)]
struct Line<'a> {
    time: &'a str,
    endpoint: &'static str,
    #[serde(rename = "dryRun")]
    dry_run: bool,
    review: &'a Value,
    response: &'a RawValue,
}

impl Writer {
    fn new(options: CaptureOptions, shared: WriterShared, next_seq: u64) -> Writer {
        Writer {
            dir: options.dir,
            max_file_bytes: options.max_file_bytes.max(1),
            max_files: options.max_files.max(1),
            redact: options.redact,
            shared,
            current: None,
            next_seq,
            logged: Vec::new(),
            dropped_since_success: 0,
            open: open_new_file,
            line: Vec::with_capacity(16 * 1024),
        }
    }

    /// Handles messages until every handle is gone.
    fn run(&mut self, rx: &Receiver<Message>) {
        while let Ok(message) = rx.recv() {
            match message {
                Message::Record(record) => {
                    let size = record.size();
                    self.write(&record);
                    drop(record);
                    let before = self.shared.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                    if before == size {
                        // The queue has drained: a later overflow is news again.
                        self.shared
                            .queue_full_logged
                            .store(false, Ordering::Relaxed);
                    }
                }
                Message::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
    }

    fn write(&mut self, record: &Record) {
        match self.encode(record) {
            Ok(()) => {}
            Err(EncodeError::TooDeep { depth }) => {
                let why = format!(
                    "the review is nested {depth} levels deep; capture parses at most {MAX_DEPTH} \
                     levels to redact it (counted as reason too_deep)"
                );
                self.drop_record(DROPPED_TOO_DEEP, Problem::TooDeep, &why);
                return;
            }
            Err(EncodeError::Other(why)) => {
                self.drop_record(DROPPED_WRITE_ERROR, Problem::Encode, &why);
                return;
            }
        }
        let len = self.line.len() as u64;
        if len > self.max_file_bytes {
            let why = format!(
                "the record is {len} bytes, more than --capture-max-file-bytes {}",
                self.max_file_bytes
            );
            self.drop_record(DROPPED_TOO_LARGE, Problem::TooLarge, &why);
            return;
        }
        if self
            .current
            .as_ref()
            .is_some_and(|c| c.len > 0 && c.len + len > self.max_file_bytes)
        {
            self.current = None;
        }
        if self.current.is_none() {
            match self.open_next() {
                Ok(current) => {
                    self.current = Some(current);
                    self.prune();
                }
                Err(err) => {
                    let problem = Problem::Open(err.kind());
                    let why = format!("cannot create a capture file: {err}");
                    self.drop_record(DROPPED_WRITE_ERROR, problem, &why);
                    return;
                }
            }
        }
        let Some(current) = self.current.as_mut() else {
            return;
        };
        match current.file.write_all(&self.line) {
            Ok(()) => {
                current.len += len;
                self.shared.metrics.capture_recorded();
                if !self.logged.is_empty() {
                    tracing::info!(
                        dir = %self.dir.display(),
                        dropped = self.dropped_since_success,
                        "capture files are being written again"
                    );
                    self.logged.clear();
                }
                self.dropped_since_success = 0;
            }
            Err(err) => {
                // Take back a partly written line so the file stays one record per line;
                // if that fails too, continue in a new file.
                let good = current.len;
                if current.file.set_len(good).is_err() {
                    self.current = None;
                }
                let problem = Problem::Write(err.kind());
                let why = format!("writing the capture file failed: {err}");
                self.drop_record(DROPPED_WRITE_ERROR, problem, &why);
            }
        }
    }

    /// Encodes the record as one line (with its newline) into `self.line`.
    fn encode(&mut self, record: &Record) -> Result<(), EncodeError> {
        // One pass over the bytes, cheap next to parsing them.
        let depth = nesting_depth(&record.review);
        if depth > MAX_DEPTH {
            return Err(EncodeError::TooDeep { depth });
        }
        let mut review: Value = serde_json::from_slice(&record.review)
            .map_err(|e| EncodeError::Other(format!("the review is not JSON: {e}")))?;
        redact_review(&mut review, &self.redact);
        // The answer goes in byte for byte. serde_json writes it compact, so it has no line
        // breaks; anything else is re-encoded to keep one record per line.
        let reencoded;
        let response: &RawValue = if record.response.contains(&b'\n') {
            let value: Value = serde_json::from_slice(&record.response)
                .map_err(|e| EncodeError::Other(format!("the answer is not JSON: {e}")))?;
            reencoded = serde_json::value::to_raw_value(&value)
                .map_err(|e| EncodeError::Other(e.to_string()))?;
            &reencoded
        } else {
            serde_json::from_slice(&record.response)
                .map_err(|e| EncodeError::Other(format!("the answer is not JSON: {e}")))?
        };
        let time = humantime::format_rfc3339_micros(record.time).to_string();
        let line = Line {
            time: &time,
            endpoint: record.endpoint.as_str(),
            dry_run: record.dry_run,
            review: &review,
            response,
        };
        self.line.clear();
        serde_json::to_writer(&mut self.line, &line)
            .map_err(|e| EncodeError::Other(e.to_string()))?;
        self.line.push(b'\n');
        Ok(())
    }

    fn open_next(&mut self) -> io::Result<Current> {
        let stamp = file_timestamp(SystemTime::now());
        let mut created_dir = false;
        let mut attempts = 0;
        loop {
            let path = self.dir.join(file_name(&stamp, self.next_seq));
            match (self.open)(&path) {
                Ok(file) => {
                    self.next_seq += 1;
                    return Ok(Current { file, path, len: 0 });
                }
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists && attempts < 1000 => {
                    attempts += 1;
                    self.next_seq += 1;
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound && !created_dir => {
                    // The directory was removed under us: make it again, once.
                    created_dir = true;
                    create_dir(&self.dir)?;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Deletes the oldest capture files beyond `max_files` (the current one is the newest).
    fn prune(&mut self) {
        let files = match list_capture_files(&self.dir) {
            Ok(files) => files,
            Err(err) => {
                self.log_once(
                    Problem::Prune(err.kind()),
                    &err,
                    "listing old capture files",
                );
                return;
            }
        };
        let excess = files.len().saturating_sub(self.max_files);
        let current = self.current.as_ref().map(|c| c.path.clone());
        for file in files.iter().take(excess) {
            if Some(&file.path) == current.as_ref() {
                continue;
            }
            match fs::remove_file(&file.path) {
                Ok(()) => tracing::debug!(file = %file.path.display(), "old capture file deleted"),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => {
                    self.log_once(
                        Problem::Prune(err.kind()),
                        &err,
                        "deleting an old capture file",
                    );
                }
            }
        }
    }

    fn drop_record(&mut self, reason: &'static str, problem: Problem, why: &dyn fmt::Display) {
        self.shared.metrics.capture_dropped(reason);
        self.dropped_since_success += 1;
        self.log_once(problem, why, "capture record dropped");
    }

    fn log_once(&mut self, problem: Problem, why: &dyn fmt::Display, what: &str) {
        if self.logged.contains(&problem) {
            return;
        }
        self.logged.push(problem);
        tracing::warn!(
            dir = %self.dir.display(),
            error = %why,
            "{what}; admission is not affected (counted in kadmit_capture_dropped_total; \
             this error is not logged again until a capture is written)"
        );
    }
}

/// Why a record could not be encoded.
#[derive(Debug)]
enum EncodeError {
    /// The review is nested deeper than [`MAX_DEPTH`].
    TooDeep {
        /// How deep.
        depth: usize,
    },
    /// Anything else: not JSON (a bug: the server answered it), or not encodable.
    Other(String),
}

/// How deeply the arrays and objects of a JSON text nest (`{"a": [1]}` is 2), found without
/// recursion: the text may be nested too deeply to parse.
fn nesting_depth(json: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &byte in json {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

fn open_new_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    // Append: after taking back a partial line, the next one starts at the new end.
    options.append(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Reviews hold object contents and user names: readable by the owner only.
        options.mode(0o600);
    }
    options.open(path)
}

fn create_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// `20250102T030405Z`: RFC 3339 without separators, safe in file names and sortable.
fn file_timestamp(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time)
        .to_string()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect()
}

fn file_name(stamp: &str, seq: u64) -> String {
    format!("{FILE_PREFIX}{stamp}-{seq:06}{FILE_SUFFIX}")
}

/// A capture file found in the directory.
#[derive(Debug)]
struct CaptureFile {
    path: PathBuf,
    stamp: String,
    seq: u64,
}

/// The capture files in `dir`, oldest first (by timestamp, then sequence number). Other files
/// are never touched.
fn list_capture_files(dir: &Path) -> io::Result<Vec<CaptureFile>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        let Some((stamp, seq)) = parse_file_name(name) else {
            continue;
        };
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            files.push(CaptureFile {
                path: entry.path(),
                stamp: stamp.to_owned(),
                seq,
            });
        }
    }
    files.sort_by(|a, b| (&a.stamp, a.seq).cmp(&(&b.stamp, b.seq)));
    Ok(files)
}

fn parse_file_name(name: &str) -> Option<(&str, u64)> {
    let middle = name.strip_prefix(FILE_PREFIX)?.strip_suffix(FILE_SUFFIX)?;
    let (stamp, seq) = middle.rsplit_once('-')?;
    let well_formed = stamp.len() == 16
        && stamp.ends_with('Z')
        && stamp.as_bytes().get(8) == Some(&b'T')
        && !seq.is_empty()
        && seq.bytes().all(|b| b.is_ascii_digit());
    if !well_formed {
        return None;
    }
    Some((stamp, seq.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(uid: &str) -> Record {
        Record {
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            endpoint: Endpoint::Validate,
            dry_run: true,
            review: Bytes::from(
                json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                    "request": {"uid": uid}})
                .to_string(),
            ),
            response: Bytes::from(format!(
                r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{{"uid":"{uid}","allowed":true}}}}"#
            )),
        }
    }

    fn writer(dir: &Path, metrics: &Arc<Metrics>) -> Writer {
        let mut options = CaptureOptions::new(dir);
        options.max_file_bytes = 1024;
        options.max_files = 2;
        let (_handle, _rx, shared) = CaptureHandle::channel(&options, Arc::clone(metrics));
        Writer::new(options, shared, 0)
    }

    fn metric(metrics: &Metrics, line_start: &str) -> u64 {
        metrics
            .encode()
            .lines()
            .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn nesting_depth_counts_brackets_outside_strings() {
        for (json, depth) in [
            ("1", 0),
            ("{}", 1),
            (r#"{"a": [1, {"b": []}], "c": {}}"#, 4),
            (r#"{"a": "[[[{{{", "b": "\\\"[["}"#, 1),
            (r#"[[[]], [[[]]]]"#, 4),
        ] {
            assert_eq!(nesting_depth(json.as_bytes()), depth, "{json}");
        }
        // serde_json parses a review MAX_DEPTH deep and its capture line, one level deeper.
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(serde_json::from_str::<Value>(&nested(MAX_DEPTH + 1)).is_ok());
        assert!(serde_json::from_str::<Value>(&nested(MAX_DEPTH + 2)).is_err());
    }

    #[test]
    fn sample_rates() {
        let uids: Vec<String> = (0..10_000).map(|i| format!("uid-{i}")).collect();
        let count = |rate: f64| {
            let sampler = Sampler::new(rate);
            uids.iter().filter(|u| sampler.sampled(u)).count()
        };
        assert_eq!(count(0.0), 0);
        assert_eq!(count(1.0), 10_000);
        let half = count(0.5);
        assert!((4_700..=5_300).contains(&half), "{half}");
        let tenth = count(0.1);
        assert!((850..=1_150).contains(&tenth), "{tenth}");
        // Deterministic.
        assert_eq!(half, count(0.5));
        assert!(parse_sample_rate("1.5").is_err());
        assert!(parse_sample_rate("-0.1").is_err());
        assert!(parse_sample_rate("NaN").is_err());
        assert_eq!(parse_sample_rate("0.25"), Ok(0.25));
    }

    #[test]
    fn redact_paths_parse() {
        let dotted = RedactPath::parse("metadata.annotations.secret-token").unwrap();
        let pointer = RedactPath::parse("/metadata/annotations/secret-token").unwrap();
        assert_eq!(dotted.segments, pointer.segments);
        let escaped = RedactPath::parse("/metadata/annotations/example.com~1a~0b").unwrap();
        assert_eq!(
            escaped.segments.last(),
            Some(&Segment::Key("example.com/a~b".to_owned()))
        );
        assert_eq!(
            escaped.to_string(),
            "/metadata/annotations/example.com~1a~0b"
        );
        for bad in ["", "a..b", ".a", "a.", "/", "/a//b", "/a~2"] {
            assert!(RedactPath::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn redacts_paths_with_wildcards_and_indexes() {
        let mut object = json!({
            "spec": {"containers": [
                {"name": "a", "env": [{"name": "X", "value": "1"}]},
                {"name": "b", "env": [{"name": "Y", "value": "2"}]}
            ]},
            "metadata": {"labels": {"x": "1"}}
        });
        RedactPath::parse("spec.containers.*.env.*.value")
            .unwrap()
            .apply(&mut object);
        RedactPath::parse("spec.containers.1.name")
            .unwrap()
            .apply(&mut object);
        RedactPath::parse("metadata.missing.deeper")
            .unwrap()
            .apply(&mut object);
        assert_eq!(
            object,
            json!({
                "spec": {"containers": [
                    {"name": "a", "env": [{"name": "X", "value": REDACTED}]},
                    {"name": REDACTED, "env": [{"name": "Y", "value": REDACTED}]}
                ]},
                "metadata": {"labels": {"x": "1"}}
            })
        );
    }

    #[test]
    fn secret_detection() {
        // The object says Secret even though the request kind is odd: still redacted.
        let mut review = json!({"request": {
            "kind": {"group": "", "version": "v1", "kind": "Other"},
            "object": {"apiVersion": "v1", "kind": "Secret", "data": {"k": "dmFsdWU="},
                       "stringData": "oops"}
        }});
        redact_review(&mut review, &[]);
        assert_eq!(review["request"]["object"]["data"]["k"], REDACTED);
        assert_eq!(review["request"]["object"]["stringData"], REDACTED);
        // A Secret kind of another group is not a core Secret.
        let mut review = json!({"request": {
            "kind": {"group": "example.com", "version": "v1", "kind": "Secret"},
            "object": {"apiVersion": "example.com/v1", "kind": "Secret", "data": {"k": "v"}}
        }});
        redact_review(&mut review, &[]);
        assert_eq!(review["request"]["object"]["data"]["k"], "v");
    }

    #[test]
    fn file_names_sort_and_parse() {
        let stamp = file_timestamp(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        assert_eq!(stamp, "20231114T221320Z");
        let name = file_name(&stamp, 7);
        assert_eq!(name, "kadmit-capture-20231114T221320Z-000007.jsonl");
        assert_eq!(parse_file_name(&name), Some((stamp.as_str(), 7)));
        assert_eq!(parse_file_name("kadmit-capture-x-1.jsonl"), None);
        assert_eq!(parse_file_name("other.jsonl"), None);
    }

    #[test]
    fn encodes_the_answer_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let mut writer = writer(dir.path(), &metrics);
        let record = record("u-1");
        writer.encode(&record).unwrap();
        let line = std::str::from_utf8(&writer.line).unwrap();
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1);
        let expected_end = format!(
            r#""response":{}}}"#,
            std::str::from_utf8(&record.response).unwrap()
        );
        assert!(line.trim_end().ends_with(&expected_end), "{line}");
        let value: Value = serde_json::from_str(line).unwrap();
        assert_eq!(value["time"], "2023-11-14T22:13:20.000000Z");
        assert_eq!(value["endpoint"], "validate");
        assert_eq!(value["dryRun"], true);
        assert_eq!(value["review"]["request"]["uid"], "u-1");
        // A pretty-printed answer is re-encoded onto one line.
        let mut pretty = record;
        pretty.response = Bytes::from("{\n  \"a\": 1\n}");
        writer.encode(&pretty).unwrap();
        assert_eq!(writer.line.iter().filter(|b| **b == b'\n').count(), 1);
    }

    #[test]
    fn rotates_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let mut writer = writer(dir.path(), &metrics);
        for i in 0..40 {
            writer.write(&record(&format!("u-{i}")));
        }
        let files = list_capture_files(dir.path()).unwrap();
        assert_eq!(files.len(), 2);
        for file in &files {
            assert!(fs::metadata(&file.path).unwrap().len() <= 1024);
        }
        assert_eq!(metric(&metrics, "kadmit_capture_records_total"), 40);
        // Too large for any file: dropped, counted.
        let mut big = record("big");
        big.review =
            Bytes::from(json!({"request": {"uid": "big", "pad": "x".repeat(2000)}}).to_string());
        writer.write(&big);
        assert_eq!(
            metric(
                &metrics,
                "kadmit_capture_dropped_total{reason=\"too_large\"}"
            ),
            1
        );
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_full_disk_drops_records_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let mut writer = writer(dir.path(), &metrics);
        // /dev/full: every write fails with ENOSPC.
        writer.open = |_| OpenOptions::new().append(true).open("/dev/full");
        for i in 0..5 {
            writer.write(&record(&format!("u-{i}")));
        }
        assert_eq!(
            metric(
                &metrics,
                "kadmit_capture_dropped_total{reason=\"write_error\"}"
            ),
            5
        );
        assert_eq!(writer.logged.len(), 1, "{:?}", writer.logged);
        assert!(matches!(
            writer.logged[0],
            Problem::Write(io::ErrorKind::StorageFull)
        ));
        assert_eq!(metric(&metrics, "kadmit_capture_records_total"), 0);
        // Space again.
        writer.open = open_new_file;
        writer.current = None;
        writer.write(&record("u-ok"));
        assert_eq!(metric(&metrics, "kadmit_capture_records_total"), 1);
        assert!(writer.logged.is_empty());
    }

    #[test]
    fn a_full_queue_drops_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let mut options = CaptureOptions::new(dir.path());
        options.queue_records = 2;
        // No writer thread: nothing drains the queue.
        let (handle, rx, _shared) = CaptureHandle::channel(&options, Arc::clone(&metrics));
        for i in 0..5 {
            let r = record(&format!("u-{i}"));
            handle.submit(r.endpoint, r.dry_run, r.review, r.response);
        }
        assert_eq!(
            metric(
                &metrics,
                "kadmit_capture_dropped_total{reason=\"queue_full\"}"
            ),
            3
        );
        assert_eq!(rx.try_iter().count(), 2);
        // The byte budget bounds large bodies too.
        let mut options = CaptureOptions::new(dir.path());
        options.queue_bytes = 300;
        let (handle, rx, _shared) = CaptureHandle::channel(&options, Arc::clone(&metrics));
        for i in 0..5 {
            let r = record(&format!("u-{i}"));
            handle.submit(r.endpoint, r.dry_run, r.review, r.response);
        }
        let queued = rx.try_iter().count();
        assert!((1..5).contains(&queued), "{queued}");
    }
}
