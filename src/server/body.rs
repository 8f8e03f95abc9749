//! Reading request bodies: each within `--max-body-bytes`, and all of them together within
//! `--max-buffered-body-bytes`, which also holds what decoding them builds.
//!
//! A per-request limit alone does not bound memory: 500 clients each sending a body just under
//! an 8 MiB limit would make the server hold 4 GiB at once, far past a pod's memory limit. So
//! every body takes its share of one budget before it keeps what it received, and holds it until
//! its review has been answered; so does what decoding the review builds (see `handlers`).
//!
//! A body's share follows what has actually arrived: nothing until its first bytes, then
//! [`CHUNK`] at a time (never more than its `Content-Length`), so a usual review takes its whole
//! share at once and a client that declares a large body and stalls holds at most one chunk. (An
//! earlier design reserved the declared length up front: eight connections that sent only
//! headers declaring 8 MiB held the whole budget until their read deadline, again and again.)
//! A body that has not arrived by `--body-read-timeout` is cut off (408).
//!
//! Growing shares could deadlock: bodies that each hold part of the budget, all waiting for
//! more. So only the oldest body holding a share waits for more; any other that finds the
//! budget spent gives its share back at once with 503 (`Retry-After`), which the oldest then
//! gets. A body that holds nothing yet waits for its first share in turn (HTTP/1.1), holding
//! nothing while it waits, so it never keeps another from a share that is free.
//!
//! Only HTTP/1.1 bodies wait. An HTTP/2 stream that waited would hold its unread data in the
//! connection's flow-control window, shared by every stream of the connection, so the streams
//! that do have their share could stall behind it until their deadline; an HTTP/2 body that
//! finds the budget spent gets 503 at once, with `Retry-After`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::body::Body;
use axum::body::Bytes;
use http_body_util::BodyExt;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// The budget is counted in units of this many bytes, so a permit covers a kibibyte.
const UNIT: usize = 1024;

/// A body's share grows by this much at a time: the whole of a usual review at once, and all
/// that a stalled client holds (1000 stalled uploads hold 16 MiB of the default 64 MiB).
pub const CHUNK: usize = 16 * 1024;

/// The bytes all requests together may have buffered, shared by every connection.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    permits: Arc<Semaphore>,
    /// Woken whenever a share is given back, so the waiting body tries again.
    freed: Arc<Notify>,
    /// Waiting bodies line up here (tokio's mutex is fair), so they get their shares in the
    /// order they came and none starves behind later, smaller ones.
    queue: Arc<tokio::sync::Mutex<()>>,
    /// The arrival numbers of the bodies holding a share: the first is the oldest, the one
    /// that may wait for more.
    holders: Arc<std::sync::Mutex<BTreeSet<u64>>>,
    arrivals: Arc<AtomicU64>,
    bytes: usize,
}

impl BodyBudget {
    /// A budget of `bytes` (rounded up to a whole kibibyte).
    pub fn new(bytes: usize) -> BodyBudget {
        let units = bytes.div_ceil(UNIT).min(Semaphore::MAX_PERMITS);
        BodyBudget {
            permits: Arc::new(Semaphore::new(units)),
            freed: Arc::new(Notify::new()),
            queue: Arc::new(tokio::sync::Mutex::new(())),
            holders: Arc::default(),
            arrivals: Arc::default(),
            bytes,
        }
    }

    /// A share of `bytes` (at most the whole budget) if it is free now.
    pub fn try_reserve(&self, bytes: usize) -> Option<BudgetShare> {
        let units = self.units_of(bytes);
        Arc::clone(&self.permits)
            .try_acquire_many_owned(units)
            .ok()
            .map(|permit| self.share(permit))
    }

    /// A share of `bytes` (at most the whole budget), waiting in turn until `deadline` for it
    /// to be free; holds nothing while it waits.
    pub async fn reserve(&self, bytes: usize, deadline: Instant) -> Option<BudgetShare> {
        let units = self.units_of(bytes);
        self.take(units, deadline)
            .await
            .map(|permit| self.share(permit))
    }

    fn units_of(&self, bytes: usize) -> u32 {
        let total = self.bytes.div_ceil(UNIT).min(Semaphore::MAX_PERMITS);
        u32::try_from(bytes.div_ceil(UNIT).min(total)).unwrap_or(u32::MAX)
    }

    fn share(&self, permit: OwnedSemaphorePermit) -> BudgetShare {
        BudgetShare {
            permit: Some(permit),
            freed: Arc::clone(&self.freed),
            holder: None,
        }
    }

    /// Whether the body that arrived `arrival`-th is the oldest holding a share.
    fn is_oldest(&self, arrival: u64) -> bool {
        let holders = self.holders.lock().unwrap_or_else(|e| e.into_inner());
        holders.first().is_none_or(|&oldest| oldest >= arrival)
    }

    /// Takes `units` at once, when they are all free, in turn: a waiting body holds nothing
    /// (tokio's `acquire_many` would hand it permits as they free up, so that a body that does
    /// not wait found none free).
    async fn take(&self, units: u32, deadline: Instant) -> Option<OwnedSemaphorePermit> {
        let _turn = tokio::time::timeout_at(deadline.into(), self.queue.lock())
            .await
            .ok()?;
        loop {
            // Registered before trying, so a share given back in between is not missed.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Ok(share) = Arc::clone(&self.permits).try_acquire_many_owned(units) {
                return Some(share);
            }
            tokio::time::timeout_at(deadline.into(), freed).await.ok()?;
        }
    }

    /// Its size in bytes, as configured.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The bytes currently taken by bodies being read or reviews being answered.
    pub fn in_use(&self) -> usize {
        let total = self.bytes.div_ceil(UNIT).min(Semaphore::MAX_PERMITS);
        total.saturating_sub(self.permits.available_permits()) * UNIT
    }
}

/// A request body read in full, and its share of the budget.
#[derive(Debug)]
pub struct BufferedBody {
    /// The body.
    pub bytes: Bytes,
    /// The share of the budget `bytes` takes, given back when dropped.
    pub share: BudgetShare,
}

/// A share of a [`BodyBudget`], given back when dropped.
#[derive(Debug)]
pub struct BudgetShare {
    permit: Option<OwnedSemaphorePermit>,
    freed: Arc<Notify>,
    /// A body's arrival number, registered among the holders while it holds the share.
    holder: Option<(u64, Arc<std::sync::Mutex<BTreeSet<u64>>>)>,
}

impl BudgetShare {
    /// Gives back all of the share but `bytes`.
    pub fn shrink_to(&mut self, bytes: usize) {
        let keep = bytes.div_ceil(UNIT);
        if let Some(held) = self.permit.as_mut()
            && let Some(unused) = held.split(held.num_permits().saturating_sub(keep))
        {
            drop(unused);
            self.freed.notify_waiters();
        }
    }
}

impl Drop for BudgetShare {
    fn drop(&mut self) {
        if let Some((arrival, holders)) = self.holder.take() {
            holders
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&arrival);
        }
        if self.permit.take().is_some() {
            self.freed.notify_waiters();
        }
    }
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Longer than the per-request limit.
    #[error("the body is larger than the limit of {limit} bytes (--max-body-bytes)")]
    TooLarge {
        /// `--max-body-bytes`.
        limit: usize,
    },
    /// The client did not send it all before the deadline.
    #[error("the body did not arrive in time")]
    Timeout,
    /// Other requests held the budget: until the deadline, or while this body, not the oldest,
    /// needed more of it.
    #[error(
        "the server is holding {budget} bytes of other requests' bodies (--max-buffered-body-bytes) and has no room for this one now; retry"
    )]
    Budget {
        /// `--max-buffered-body-bytes`.
        budget: usize,
    },
    /// The connection failed while the body was being read.
    #[error("reading the body failed: {0}")]
    Read(String),
}

/// Reads `body` by `deadline`, refusing more than `limit` bytes, taking its share of `budget`
/// as it arrives (see the module documentation): at most `declared` bytes (its
/// `Content-Length`, at most `limit`), or `limit`. When the budget is spent, waits for it until
/// `deadline` when `wait` and allowed to; otherwise refuses at once.
pub async fn read(
    mut body: Body,
    declared: Option<usize>,
    limit: usize,
    budget: &BodyBudget,
    wait: bool,
    deadline: Instant,
) -> Result<BufferedBody, BodyError> {
    let allowed = declared.unwrap_or(limit).min(limit);
    let arrival = budget.arrivals.fetch_add(1, Ordering::Relaxed);
    let mut share = BudgetShare {
        permit: None,
        freed: Arc::clone(&budget.freed),
        holder: None,
    };
    let mut received = Received::Empty;
    loop {
        let frame = match tokio::time::timeout_at(deadline.into(), body.frame()).await {
            Err(_) => return Err(BodyError::Timeout),
            Ok(None) => break,
            Ok(Some(Err(err))) => return Err(BodyError::Read(err.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers: nothing a review needs
        };
        if data.is_empty() {
            continue;
        }
        // Past the limit, or past what was declared (hyper stops there too).
        let total = received.len() + data.len();
        if total > allowed {
            return Err(BodyError::TooLarge { limit });
        }
        // The share covers what is kept, in whole chunks, never past what may come.
        let needed = total.next_multiple_of(CHUNK).min(allowed).div_ceil(UNIT);
        let held = share
            .permit
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits);
        if needed > held {
            grow(&mut share, needed - held, budget, arrival, wait, deadline).await?;
        }
        received.push(data, allowed);
    }
    // A body reserves in whole chunks: keep only what it took.
    let bytes = received.into_bytes();
    let used = bytes.len().div_ceil(UNIT);
    if let Some(held) = share.permit.as_mut()
        && let Some(unused) = held.split(held.num_permits().saturating_sub(used))
    {
        drop(unused);
        budget.freed.notify_waiters();
    }
    Ok(BufferedBody { bytes, share })
}

/// Adds `units` to `share`: at once if they are free; otherwise, waiting in turn, a body that
/// holds nothing yet or is the oldest holder; any other gives its share back (503).
async fn grow(
    share: &mut BudgetShare,
    units: usize,
    budget: &BodyBudget,
    arrival: u64,
    wait: bool,
    deadline: Instant,
) -> Result<(), BodyError> {
    // At most the per-request limit's units, which the budget holds (the server refuses to
    // start with a budget below the limit).
    let units = u32::try_from(units).unwrap_or(u32::MAX);
    let spent = || BodyError::Budget {
        budget: budget.bytes,
    };
    let more = match Arc::clone(&budget.permits).try_acquire_many_owned(units) {
        Ok(more) => more,
        Err(_) if !wait => return Err(spent()),
        Err(_) if share.permit.is_some() && !budget.is_oldest(arrival) => return Err(spent()),
        Err(_) => budget.take(units, deadline).await.ok_or_else(spent)?,
    };
    match share.permit.as_mut() {
        Some(held) => held.merge(more),
        None => {
            share.permit = Some(more);
            budget
                .holders
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(arrival);
            share.holder = Some((arrival, Arc::clone(&budget.holders)));
        }
    }
    Ok(())
}

/// The frames received so far: the usual one-frame body is kept as it came, without a copy.
enum Received {
    Empty,
    One(Bytes),
    Many(Vec<u8>),
}

impl Received {
    fn len(&self) -> usize {
        match self {
            Received::Empty => 0,
            Received::One(bytes) => bytes.len(),
            Received::Many(bytes) => bytes.len(),
        }
    }

    /// Appends `data`; `allowed` (the most the body may hold, its share) sizes the buffer once,
    /// so it never grows by doubling past what the share accounts for.
    fn push(&mut self, data: Bytes, allowed: usize) {
        *self = match std::mem::replace(self, Received::Empty) {
            Received::Empty => Received::One(data),
            Received::One(first) => {
                let mut all = Vec::with_capacity(allowed.max(first.len() + data.len()));
                all.extend_from_slice(&first);
                all.extend_from_slice(&data);
                Received::Many(all)
            }
            Received::Many(mut all) => {
                all.extend_from_slice(&data);
                Received::Many(all)
            }
        }
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Received::Empty => Bytes::new(),
            Received::One(bytes) => bytes,
            // A body without a length got a buffer of the limit: give back what it did not use.
            Received::Many(mut all) => {
                all.shrink_to_fit();
                Bytes::from(all)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use super::*;

    fn streamed(chunks: &[&'static [u8]]) -> Body {
        let frames: Vec<Result<Bytes, std::io::Error>> = chunks
            .iter()
            .map(|chunk| Ok(Bytes::from_static(chunk)))
            .collect();
        Body::from_stream(futures::stream::iter(frames))
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn reads_frames_in_order_and_gives_the_share_back_when_dropped() {
        let budget = BodyBudget::new(8 * UNIT);
        // Without a length, the limit (4 KiB) is reserved, and what was not used given back.
        let body = read(
            streamed(&[b"ab", b"", b"cd"]),
            None,
            4 * UNIT,
            &budget,
            true,
            soon(),
        )
        .await
        .unwrap();
        assert_eq!(body.bytes, Bytes::from_static(b"abcd"));
        assert_eq!(budget.in_use(), UNIT);
        drop(body);
        assert_eq!(budget.in_use(), 0);
        let body = read(
            streamed(&[b"abcd"]),
            Some(4),
            4 * UNIT,
            &budget,
            true,
            soon(),
        )
        .await
        .unwrap();
        assert_eq!(budget.in_use(), UNIT);
        drop(body);
    }

    #[tokio::test]
    async fn refuses_a_body_over_the_limit() {
        let budget = BodyBudget::new(8 * UNIT);
        let big: &'static [u8] = &[b'x'; 3 * UNIT];
        let err = read(streamed(&[big, big]), None, 5 * UNIT, &budget, true, soon())
            .await
            .unwrap_err();
        assert!(matches!(err, BodyError::TooLarge { limit: 5120 }), "{err}");
        assert_eq!(budget.in_use(), 0, "a refused body keeps no share");
    }

    #[tokio::test]
    async fn waits_for_the_budget_and_refuses_when_it_stays_spent() {
        let budget = BodyBudget::new(2 * UNIT);
        let big: &'static [u8] = &[b'x'; 2 * UNIT];
        let held = read(
            streamed(&[big]),
            Some(2 * UNIT),
            2 * UNIT,
            &budget,
            true,
            soon(),
        )
        .await
        .unwrap();
        assert_eq!(budget.in_use(), 2 * UNIT);
        let deadline = Instant::now() + Duration::from_millis(100);
        let err = read(
            streamed(&[b"y"]),
            Some(1),
            2 * UNIT,
            &budget,
            true,
            deadline,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, BodyError::Budget { budget: 2048 }), "{err}");
        // Answered reviews give their share back; a waiting reader then gets its turn.
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { read(streamed(&[b"y"]), Some(1), 2 * UNIT, &budget, true, soon()).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        drop(held);
        let body = waiting.await.unwrap().unwrap();
        assert_eq!(body.bytes, Bytes::from_static(b"y"));
    }

    #[tokio::test]
    async fn without_waiting_a_spent_budget_is_refused_at_once() {
        let budget = BodyBudget::new(2 * UNIT);
        let big: &'static [u8] = &[b'x'; 2 * UNIT];
        let held = read(streamed(&[big]), None, 2 * UNIT, &budget, false, soon())
            .await
            .unwrap();
        let started = Instant::now();
        let err = read(streamed(&[b"y"]), Some(1), 2 * UNIT, &budget, false, soon())
            .await
            .unwrap_err();
        assert!(matches!(err, BodyError::Budget { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(1));
        drop(held);
        read(streamed(&[b"y"]), Some(1), 2 * UNIT, &budget, false, soon())
            .await
            .unwrap();
    }

    /// A body waiting for a large share holds none of the budget, so a smaller one that fits
    /// in what is free gets it (an HTTP/2 stream, which does not wait, is not refused).
    #[tokio::test]
    async fn a_waiting_body_keeps_nobody_from_a_free_share() {
        let budget = BodyBudget::new(4 * UNIT);
        let half: &'static [u8] = &[b'x'; 2 * UNIT];
        let held = read(
            streamed(&[half]),
            Some(2 * UNIT),
            4 * UNIT,
            &budget,
            true,
            soon(),
        )
        .await
        .unwrap();
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move {
                let whole: &'static [u8] = &[b'x'; 4 * UNIT];
                read(
                    streamed(&[whole]),
                    Some(4 * UNIT),
                    4 * UNIT,
                    &budget,
                    true,
                    soon(),
                )
                .await
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let small = read(streamed(&[b"y"]), Some(1), 4 * UNIT, &budget, false, soon())
            .await
            .unwrap();
        assert_eq!(budget.in_use(), 3 * UNIT);
        drop(small);
        assert!(!waiting.is_finished());
        drop(held);
        let body = waiting.await.unwrap().unwrap();
        assert_eq!(body.bytes.len(), 4 * UNIT);
    }

    /// Many bodies larger together than the budget all get through, in turn: none holds part
    /// of the budget while waiting for the rest.
    #[tokio::test]
    async fn a_flood_larger_than_the_budget_is_read_in_turn() {
        let budget = BodyBudget::new(4 * UNIT);
        let chunk: &'static [u8] = &[b'x'; UNIT];
        let readers: Vec<_> = (0..50)
            .map(|_| {
                let budget = budget.clone();
                tokio::spawn(async move {
                    let body = read(
                        streamed(&[chunk, chunk, chunk]),
                        None,
                        3 * UNIT,
                        &budget,
                        true,
                        soon(),
                    )
                    .await?;
                    assert!(budget.in_use() <= 4 * UNIT);
                    tokio::task::yield_now().await;
                    Ok::<_, BodyError>(body.bytes.len())
                })
            })
            .collect();
        for reader in readers {
            assert_eq!(reader.await.unwrap().unwrap(), 3 * UNIT);
        }
        assert_eq!(budget.in_use(), 0);
    }
}
