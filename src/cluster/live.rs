//! The live cluster view: in-memory caches kept current by watching the API server, and an
//! authorizer that asks the API server (SubjectAccessReviews) and caches its answers.
//!
//! Each resource kind gets one watch task (a `watcher` feeding a cache) running in its own tokio
//! task. Admission lookups only read those caches, so the hot path never waits on the API
//! server; the price is that answers may lag the cluster by a watch event.
//!
//! Up to five kinds are watched, each only when a configured policy reads it (see [`Caches`]),
//! so the chart can grant the least RBAC: Namespaces (always: their labels select Pod Security
//! levels and namespace selectors), Pods (checked against a namespace's new level when its
//! labels change), `windows.k8s.io` GMSACredentialSpecs (inlined into pods by the GMSA webhook),
//! LimitRanges (their defaults applied to pods) and, opt-in, the metadata of Secrets (to report
//! an image pull secret missing from the pod's namespace). Objects are stripped of what no
//! policy reads before they are stored; for Pods, the largest objects in most clusters, that is
//! everything but the identifying metadata and the spec, and for Secrets only names are kept
//! (their data is never even requested). GMSACredentialSpecs come from a CRD that may not be
//! installed: until it is, that cache counts as synced and empty (see [`LiveCluster::start`]).
//!
//! Namespaces, Pods and GMSACredentialSpecs live in kube reflector stores (keyed by namespace
//! and name). LimitRanges and Secrets are looked up per namespace on the admission hot path,
//! so they are kept in a per-namespace index instead, which a lookup reads without scanning the
//! rest of the cluster.
//!
//! Authorization ([`ClusterView::authorize`]) is the one lookup that may wait for the API
//! server; see [`AuthorizerSettings`] and [`LiveCluster::authorize`] for how its answers are
//! cached, shared and bounded in time.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::{
    Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard,
};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::ClusterResourceScope;
use k8s_openapi::api::authorization::v1::{
    LocalSubjectAccessReview, ResourceAttributes, SubjectAccessReviewSpec,
    SubjectAccessReviewStatus,
};
use k8s_openapi::api::core::v1::{LimitRange, Namespace, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kadmit_core::cluster::{AccessDecision, AccessRequest, GmsaCredentialSpec};
use kadmit_core::{ClusterError, ClusterView};
use kube::api::PostParams;
use kube::config::{InferConfigError, KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Config, Resource};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Annotation `kubectl apply` writes: a full copy of the applied object, useless to policies.
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Which optional caches a [`LiveCluster`] runs. Namespaces are always watched.
///
/// A cache that does not run is never requested from the API server, so kadmit needs no RBAC
/// for its kind; its lookups answer as a view that does not track the kind (see
/// [`LiveCluster`]'s [`ClusterView`] methods). [`Caches::for_config`] turns on exactly what the
/// configured policies read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caches {
    /// Pods (`list`/`watch` on `pods`), read by Pod Security when a namespace's level changes.
    pub pods: bool,
    /// `windows.k8s.io` GMSACredentialSpecs, read by the GMSA webhook.
    pub gmsa_credential_specs: bool,
    /// LimitRanges, whose defaults are applied to pods.
    pub limit_ranges: bool,
    /// The metadata of Secrets (never their data), to report a missing image pull secret.
    /// Needs `list`/`watch` on Secrets, which RBAC cannot narrow to metadata.
    pub secrets: bool,
}

impl Caches {
    /// Every cache, as [`LiveCluster::start`] runs them.
    #[must_use]
    pub const fn all() -> Self {
        Self {
            pods: true,
            gmsa_credential_specs: true,
            limit_ranges: true,
            secrets: true,
        }
    }

    /// The caches the policies enabled in `config` read: Pods for Pod Security, specs for
    /// GMSA, LimitRanges for `defaultResources.limitRanges`, and Secrets only when
    /// `imagePullSecrets.watchSecrets` is set and there are rules whose secrets to check.
    #[must_use]
    pub fn for_config(config: &kadmit_core::Config) -> Self {
        Self {
            pods: config.pod_security.enabled,
            gmsa_credential_specs: config.gmsa.enabled,
            limit_ranges: config.default_resources.limit_ranges,
            secrets: config.image_pull_secrets.watch_secrets
                && !config.image_pull_secrets.rules.is_empty(),
        }
    }

    /// The plural resource names of the caches that run (namespaces first) and of those that
    /// do not, for logs.
    fn resources(self) -> (Vec<&'static str>, Vec<&'static str>) {
        let all = [
            ("namespaces", true),
            ("pods", self.pods),
            ("gmsacredentialspecs", self.gmsa_credential_specs),
            ("limitranges", self.limit_ranges),
            ("secrets", self.secrets),
        ];
        let running = all.iter().filter(|(_, on)| *on).map(|(r, _)| *r).collect();
        let off = all.iter().filter(|(_, on)| !*on).map(|(r, _)| *r).collect();
        (running, off)
    }
}

/// The server's [`ClusterView`], answering from watch-backed in-memory caches.
///
/// Cloning is cheap (every field is reference counted) so each request handler can hold one.
/// The watch tasks stop when the last clone is dropped, so a discarded view does not keep
/// watching the API server. Clones share one authorization cache.
#[derive(Debug, Clone)]
pub struct LiveCluster {
    namespaces: Reflector<Namespace>,
    /// `None` when not running (see [`Caches`]), and likewise below.
    pods: Option<Reflector<Pod>>,
    gmsa_specs: Option<Reflector<GmsaCredentialSpecObject>>,
    limit_ranges: Option<NamespacedCache<Arc<LimitRange>>>,
    /// Secret names only: whether one exists is all a policy asks.
    secrets: Option<NamespacedCache<()>>,
    caches: Caches,
    authorizer: Arc<Authorizer>,
}

impl LiveCluster {
    /// Starts watching the cluster through `client`, with every cache ([`Caches::all`]) and the
    /// default [`AuthorizerSettings`], and returns the (not yet synced) view.
    ///
    /// Returns at once: the initial lists happen in background tasks, and lookups answer
    /// [`ClusterError::NotSynced`] until they complete (see [`LiveCluster::wait_synced`]).
    ///
    /// GMSACredentialSpecs are a CRD that many clusters lack. When their list answers 404 Not
    /// Found, the cache counts as synced and empty (a warning is logged once, so the server
    /// still becomes ready) and the watch keeps retrying with backoff (up to 30 s apart), so
    /// specs appear once the CRD is installed. Should the CRD be removed later, the cache is
    /// emptied the same way.
    ///
    /// # Panics
    ///
    /// If called outside a tokio runtime: it spawns the watch tasks on the current runtime,
    /// and authorization requests later run on that same runtime.
    #[must_use]
    pub fn start(client: Client) -> Self {
        Self::start_with(client, AuthorizerSettings::default())
    }

    /// [`LiveCluster::start`] with explicit authorization cache settings.
    ///
    /// # Panics
    ///
    /// If called outside a tokio runtime, as [`LiveCluster::start`].
    #[must_use]
    pub fn start_with(client: Client, authorizer: AuthorizerSettings) -> Self {
        Self::start_with_caches(client, Caches::all(), authorizer)
    }

    /// [`LiveCluster::start`], running only the caches in `caches` (as `kadmit serve` does,
    /// with [`Caches::for_config`]), with explicit authorization cache settings.
    ///
    /// # Panics
    ///
    /// If called outside a tokio runtime, as [`LiveCluster::start`].
    #[must_use]
    pub fn start_with_caches(
        client: Client,
        caches: Caches,
        authorizer: AuthorizerSettings,
    ) -> Self {
        let (running, off) = caches.resources();
        tracing::info!(caches = ?running, not_watched = ?off, "starting the cluster caches");
        Self {
            namespaces: Reflector::start(
                Api::all(client.clone()),
                "namespaces",
                strip_for_cache,
                NotFound::Retry,
            ),
            pods: caches.pods.then(|| {
                Reflector::start(
                    Api::all(client.clone()),
                    "pods",
                    strip_pod_for_cache,
                    NotFound::Retry,
                )
            }),
            gmsa_specs: caches.gmsa_credential_specs.then(|| {
                Reflector::start(
                    Api::all(client.clone()),
                    "gmsacredentialspecs",
                    strip_gmsa_for_cache,
                    NotFound::Empty {
                        warning: "GMSA credential specs are unavailable because the \
                                  gmsacredentialspecs.windows.k8s.io CRD is not installed; \
                                  treating the cluster as having none and retrying in the \
                                  background",
                    },
                )
            }),
            limit_ranges: caches.limit_ranges.then(|| {
                NamespacedCache::start(
                    Api::<LimitRange>::all(client.clone()),
                    "limitranges",
                    strip_for_cache,
                    Arc::new,
                )
            }),
            // `PartialObjectMeta` makes the watcher ask for metadata only
            // (`as=PartialObjectMetadataList`), so Secret data never reaches kadmit.
            secrets: caches.secrets.then(|| {
                NamespacedCache::start(
                    Api::<PartialObjectMeta<Secret>>::all(client.clone()),
                    "secrets",
                    |_| {},
                    |_| (),
                )
            }),
            caches,
            authorizer: Arc::new(Authorizer::new(client, Handle::current(), authorizer)),
        }
    }

    /// The caches this view runs.
    #[must_use]
    pub fn caches(&self) -> Caches {
        self.caches
    }

    /// The watch tasks of the caches that run.
    fn watches(&self) -> impl Iterator<Item = &WatchTask> {
        [
            Some(&self.namespaces.watch),
            self.pods.as_ref().map(|cache| &cache.watch),
            self.gmsa_specs.as_ref().map(|cache| &cache.watch),
            self.limit_ranges.as_ref().map(|cache| &cache.watch),
            self.secrets.as_ref().map(|cache| &cache.watch),
        ]
        .into_iter()
        .flatten()
    }

    /// Whether every running cache has completed its initial list (or, for
    /// GMSACredentialSpecs, found the CRD missing), so lookups can be answered.
    ///
    /// Stays true after a later re-list (for example after the watch expired): the cache keeps
    /// serving its previous contents until the new list replaces them in one step.
    #[must_use]
    pub fn is_synced(&self) -> bool {
        self.watches().all(WatchTask::is_synced)
    }

    /// Waits until every running cache has completed its initial list.
    ///
    /// This can wait forever if the API server is unreachable; bound it with a timeout.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Unavailable`] if a watch task stopped before its initial list completed.
    pub async fn wait_synced(&self) -> Result<(), ClusterError> {
        futures::future::try_join_all(self.watches().map(WatchTask::wait_synced)).await?;
        Ok(())
    }

    /// The settings the authorization cache was started with.
    #[must_use]
    pub fn authorizer_settings(&self) -> &AuthorizerSettings {
        &self.authorizer.settings
    }
}

impl ClusterView for LiveCluster {
    fn namespace(&self, name: &str) -> Result<Option<Arc<Namespace>>, ClusterError> {
        self.namespaces.get(&ObjectRef::new(name))
    }

    /// The cached pods whose `metadata.namespace` is `namespace`, stripped as described in
    /// `strip_pod_for_cache` (no `status`, no managed fields). None when Pods are not watched
    /// (Pod Security disabled, its only reader).
    ///
    /// Cost: the reflector store is a flat map keyed by namespace and name, so this scans every
    /// cached pod in the cluster (under the store's read lock) and clones the `Arc`s of the
    /// matches: O(pods in the cluster) per call. That is acceptable because the only caller is
    /// Pod Security when a namespace's enforce label changes, which is rare (unlike
    /// `limit_ranges`, which runs for every pod and so has an index).
    fn pods(&self, namespace: &str) -> Result<Vec<Arc<Pod>>, ClusterError> {
        match &self.pods {
            Some(pods) => pods.filter(|pod| pod.metadata.namespace.as_deref() == Some(namespace)),
            None => Ok(Vec::new()),
        }
    }

    /// The cached GMSACredentialSpec called `name` (exact, case-sensitive), as watched; `None`
    /// when there is none, including when the CRD is not installed or specs are not watched.
    fn gmsa_credential_spec(
        &self,
        name: &str,
    ) -> Result<Option<Arc<GmsaCredentialSpec>>, ClusterError> {
        let Some(specs) = &self.gmsa_specs else {
            return Ok(None);
        };
        Ok(specs
            .get(&ObjectRef::new(name))?
            .map(|object| object.to_spec()))
    }

    /// The cached LimitRanges of `namespace` (without managed fields or the last-applied
    /// annotation), ordered by name; none when LimitRanges are not watched.
    ///
    /// Cost: O(LimitRanges in `namespace`), whatever the cluster holds, from a per-namespace
    /// index; the objects are shared, not copied.
    ///
    /// # Errors
    ///
    /// [`ClusterError::NotSynced`] (`limitranges`) until the initial list has completed.
    fn limit_ranges(&self, namespace: &str) -> Result<Vec<Arc<LimitRange>>, ClusterError> {
        match &self.limit_ranges {
            Some(cache) => cache.values(namespace),
            None => Ok(Vec::new()),
        }
    }

    /// Whether a Secret `namespace/name` is cached; `None` when Secrets are not watched (see
    /// [`Caches::secrets`]), so callers do not report a secret missing without evidence.
    ///
    /// # Errors
    ///
    /// [`ClusterError::NotSynced`] (`secrets`) until the initial list has completed.
    fn secret_exists(&self, namespace: &str, name: &str) -> Result<Option<bool>, ClusterError> {
        match &self.secrets {
            Some(cache) => cache.contains(namespace, name).map(Some),
            None => Ok(None),
        }
    }

    /// Asks the API server with a `LocalSubjectAccessReview` in `request.namespace` (as the
    /// upstream GMSA webhook does), answering from the cache when it can.
    ///
    /// - Answers are cached per identical question: "allowed" for
    ///   [`AuthorizerSettings::allowed_ttl`], "denied" for [`AuthorizerSettings::denied_ttl`].
    ///   Errors are not cached.
    /// - Concurrent identical questions share one request (single flight): the first caller
    ///   starts it, the others wait for its answer.
    /// - The request runs as a task on the runtime [`LiveCluster::start`] was called on, and
    ///   ends itself after [`AuthorizerSettings::request_timeout`]. This thread only waits for
    ///   it, never past `deadline` (returning a "timed out" error then). Without a deadline it
    ///   waits for the request to end, at most the request timeout plus a second. A caller
    ///   that gives up leaves the request running, so its answer still fills the cache.
    /// - `allowed` is `status.allowed && !status.denied`; `reason` is `status.reason`.
    ///
    /// Call it from a thread that may block: a `spawn_blocking` thread (as the server does),
    /// or any thread outside the runtime. Called from a worker of a multi-thread runtime, it
    /// waits inside [`tokio::task::block_in_place`], so that worker's other tasks move to
    /// another thread. Called from a current-thread runtime's own thread, it cannot tell that
    /// thread from one of its blocking threads, so it simply waits: it never panics, but if the
    /// view was started on that same runtime the request cannot make progress meanwhile, and
    /// the call fails at its deadline (at most a second past the request timeout) with a
    /// "timed out" error.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Unavailable`], with a message starting `error when checking authz
    /// access:`, when the API server's answer is an error, does not come in time (the message
    /// then says "timed out"), or `request.namespace` is empty.
    fn authorize(
        &self,
        request: &AccessRequest,
        deadline: Option<Instant>,
    ) -> Result<AccessDecision, ClusterError> {
        self.authorizer.authorize(request, deadline)
    }
}

/// How [`LiveCluster`] caches and bounds the SubjectAccessReviews behind
/// [`ClusterView::authorize`].
///
/// The short TTLs trade API server load for freshness: a burst of pods from one controller
/// asks once, while a RoleBinding change takes effect within one TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizerSettings {
    /// How long an "allowed" answer is reused: 30 s by default, so a revoked permission stops
    /// being honoured within 30 s. Zero disables caching allowed answers.
    pub allowed_ttl: Duration,
    /// How long a "denied" answer is reused: 5 s by default, short so that a permission just
    /// granted (typically right after a pod was rejected) is seen quickly. Zero disables
    /// caching denied answers.
    pub denied_ttl: Duration,
    /// The most answers kept: 10 000 by default (a few MB at most). When full, expired answers
    /// are dropped first, then those closest to expiring. Zero disables caching.
    pub max_entries: usize,
    /// The longest one SubjectAccessReview may take, whatever its callers' deadlines: 10 s by
    /// default. It bounds calls without a deadline, and ends a hung request so that the next
    /// identical question asks again instead of waiting on it.
    pub request_timeout: Duration,
}

impl Default for AuthorizerSettings {
    fn default() -> Self {
        Self {
            allowed_ttl: Duration::from_secs(30),
            denied_ttl: Duration::from_secs(5),
            max_entries: 10_000,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// The SubjectAccessReview authorizer: a cache of answers and the requests in flight.
struct Authorizer {
    client: Client,
    /// The runtime requests run on, captured at [`LiveCluster::start`]: callers are plain
    /// (blocking) threads, which cannot drive the request themselves.
    runtime: Handle,
    settings: AuthorizerSettings,
    state: Arc<Mutex<AuthzState>>,
}

impl Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = lock(&self.state);
        f.debug_struct("Authorizer")
            .field("settings", &self.settings)
            .field("cached", &state.answers.len())
            .field("in_flight", &state.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl Authorizer {
    fn new(client: Client, runtime: Handle, settings: AuthorizerSettings) -> Self {
        Self {
            client,
            runtime,
            settings,
            state: Arc::new(Mutex::new(AuthzState::default())),
        }
    }

    fn authorize(
        &self,
        request: &AccessRequest,
        deadline: Option<Instant>,
    ) -> Result<AccessDecision, ClusterError> {
        if request.namespace.is_empty() {
            return Err(authz_error(
                "a LocalSubjectAccessReview needs a namespace, and the request has none",
            ));
        }
        let now = Instant::now();
        let (flight, started) = {
            let mut state = lock(&self.state);
            if let Some(decision) = state.cached(request, now) {
                return Ok(decision);
            }
            match state.in_flight.get(request) {
                Some(flight) => (Arc::clone(flight), false),
                None => {
                    let flight = Arc::new(Flight::new(now, self.settings.request_timeout));
                    state.in_flight.insert(request.clone(), Arc::clone(&flight));
                    (flight, true)
                }
            }
        };
        // Outside the lock: if the runtime is gone, spawning drops the task at once, and the
        // guard it owns takes the lock to finish the flight.
        if started {
            self.start_request(request.clone(), Arc::clone(&flight));
        }
        let until = match (deadline, flight.give_up) {
            (Some(deadline), Some(give_up)) => Some(deadline.min(give_up)),
            (deadline, give_up) => deadline.or(give_up),
        };
        let outcome = wait_blocking(|| flight.wait(until));
        outcome.unwrap_or_else(|| {
            Err(authz_error(
                "timed out waiting for the API server to answer the SubjectAccessReview",
            ))
        })
    }

    /// Spawns the SubjectAccessReview for `request` on the captured runtime; whatever happens
    /// to the task, its [`FlightGuard`] completes `flight`.
    fn start_request(&self, request: AccessRequest, flight: Arc<Flight>) {
        let review = local_subject_access_review(&request);
        let api: Api<LocalSubjectAccessReview> =
            Api::namespaced(self.client.clone(), &request.namespace);
        let timeout = self.settings.request_timeout;
        let guard = FlightGuard {
            state: Arc::clone(&self.state),
            settings: self.settings.clone(),
            request,
            flight,
            result: None,
        };
        self.runtime.spawn(async move {
            let answer =
                tokio::time::timeout(timeout, api.create(&PostParams::default(), &review)).await;
            guard.finish(match answer {
                Ok(Ok(review)) => Ok(decision_from(review.status)),
                Ok(Err(error)) => Err(authz_error(error)),
                Err(_) => Err(authz_error(format_args!(
                    "the SubjectAccessReview timed out after {}",
                    humantime::format_duration(timeout)
                ))),
            });
        });
    }
}

/// `error when checking authz access: <what>`, as the upstream GMSA webhook words it.
fn authz_error(what: impl std::fmt::Display) -> ClusterError {
    ClusterError::Unavailable(format!("error when checking authz access: {what}"))
}

/// The review upstream posts: the question as resource attributes in the request namespace.
///
/// `AccessRequest` has no API version, so none is sent (RBAC ignores it anyway); an empty
/// name asks about every object of the resource, and empty groups are left out.
fn local_subject_access_review(request: &AccessRequest) -> LocalSubjectAccessReview {
    let non_empty = |value: &str| (!value.is_empty()).then(|| value.to_owned());
    LocalSubjectAccessReview {
        metadata: ObjectMeta {
            namespace: Some(request.namespace.clone()),
            ..ObjectMeta::default()
        },
        spec: SubjectAccessReviewSpec {
            user: Some(request.user.clone()),
            groups: (!request.groups.is_empty()).then(|| request.groups.clone()),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(request.namespace.clone()),
                verb: non_empty(&request.verb),
                group: Some(request.group.clone()),
                version: non_empty(&request.version),
                resource: non_empty(&request.resource),
                name: non_empty(&request.name),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        status: None,
    }
}

/// Allowed iff the authorizer allowed and did not explicitly deny; a missing status is a
/// denial without a reason.
fn decision_from(status: Option<SubjectAccessReviewStatus>) -> AccessDecision {
    let status = status.unwrap_or_default();
    if let Some(error) = status.evaluation_error.as_deref().filter(|e| !e.is_empty()) {
        tracing::debug!(error, "the authorizer reported an evaluation error");
    }
    AccessDecision {
        allowed: status.allowed && !status.denied.unwrap_or(false),
        reason: status.reason.unwrap_or_default(),
    }
}

/// Waits in `wait`, telling a multi-thread runtime first when this is one of its workers.
///
/// `block_in_place` hands the worker's other tasks to another thread (and is a no-op on a
/// blocking-pool thread or outside a runtime). It panics on a current-thread runtime, which is
/// why it is only used on a multi-thread one; there the wait simply blocks.
fn wait_blocking<R>(wait: impl FnOnce() -> R) -> R {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    }
}

/// Locks `mutex`, ignoring poisoning: every critical section here leaves the state consistent
/// between statements, so a panic elsewhere does not make it unusable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The cached answers, and the questions being asked.
#[derive(Default)]
struct AuthzState {
    answers: HashMap<AccessRequest, CachedAnswer>,
    /// The same answers by expiry (then insertion order): the front is what to evict first.
    by_expiry: BTreeMap<(Instant, u64), AccessRequest>,
    /// Tie-breaker for equal expiry instants.
    next_seq: u64,
    /// Questions asked and not answered yet, with the flight their callers wait on.
    in_flight: HashMap<AccessRequest, Arc<Flight>>,
}

struct CachedAnswer {
    decision: AccessDecision,
    /// The answer's key in `by_expiry`.
    expiry: (Instant, u64),
}

impl AuthzState {
    /// The cached answer to `request`, unless absent or expired (an expired one is dropped).
    fn cached(&mut self, request: &AccessRequest, now: Instant) -> Option<AccessDecision> {
        let answer = self.answers.get(request)?;
        if answer.expiry.0 > now {
            return Some(answer.decision.clone());
        }
        self.forget(request);
        None
    }

    fn forget(&mut self, request: &AccessRequest) {
        if let Some(answer) = self.answers.remove(request) {
            self.by_expiry.remove(&answer.expiry);
        }
    }

    /// Caches `decision` for its TTL, first dropping expired answers and, at capacity, those
    /// closest to expiring.
    fn remember(
        &mut self,
        request: AccessRequest,
        decision: AccessDecision,
        settings: &AuthorizerSettings,
        now: Instant,
    ) {
        self.forget(&request);
        let ttl = if decision.allowed {
            settings.allowed_ttl
        } else {
            settings.denied_ttl
        };
        let Some(expires) = now.checked_add(ttl) else {
            return;
        };
        if ttl.is_zero() || settings.max_entries == 0 {
            return;
        }
        while let Some(oldest) = self.by_expiry.first_entry() {
            if oldest.key().0 > now && self.answers.len() < settings.max_entries {
                break;
            }
            let evicted = oldest.remove();
            self.answers.remove(&evicted);
        }
        let expiry = (expires, self.next_seq);
        self.next_seq = self.next_seq.wrapping_add(1);
        self.by_expiry.insert(expiry, request.clone());
        self.answers
            .insert(request, CachedAnswer { decision, expiry });
    }
}

/// How much longer than the request timeout callers wait for a flight to end by itself.
///
/// A flight's task ends itself at the request timeout, and callers normally get its own
/// answer or error then. This margin only matters when the task cannot run (its runtime is
/// stalled, or it is the current-thread runtime the caller is blocking): then callers without
/// an earlier deadline give up on their own.
const FLIGHT_GRACE: Duration = Duration::from_secs(1);

/// One SubjectAccessReview in flight: its result, once known, and a condition variable for
/// the callers blocked on it.
struct Flight {
    result: Mutex<Option<Result<AccessDecision, ClusterError>>>,
    done: Condvar,
    /// When callers stop waiting whatever their deadline: the request's own timeout plus
    /// [`FLIGHT_GRACE`] (`None` if that is too far to represent).
    give_up: Option<Instant>,
}

impl Flight {
    fn new(started: Instant, request_timeout: Duration) -> Self {
        Self {
            result: Mutex::new(None),
            done: Condvar::new(),
            give_up: started
                .checked_add(request_timeout)
                .and_then(|end| end.checked_add(FLIGHT_GRACE)),
        }
    }

    fn complete(&self, result: Result<AccessDecision, ClusterError>) {
        *lock(&self.result) = Some(result);
        self.done.notify_all();
    }

    /// Blocks until the result is known or `until` passes (`None`: no limit).
    fn wait(&self, until: Option<Instant>) -> Option<Result<AccessDecision, ClusterError>> {
        let mut result = lock(&self.result);
        loop {
            if let Some(result) = result.as_ref() {
                return Some(result.clone());
            }
            result = match until {
                None => self
                    .done
                    .wait(result)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(until) => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    self.done
                        .wait_timeout(result, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}

/// Owned by a request's task: when the task ends, however it ends (answer, error, timeout,
/// or dropped unpolled because the runtime shut down), this caches a decision, clears the
/// in-flight entry and wakes the waiting callers, all before anyone can miss both the entry
/// and the cached answer.
struct FlightGuard {
    state: Arc<Mutex<AuthzState>>,
    settings: AuthorizerSettings,
    request: AccessRequest,
    flight: Arc<Flight>,
    result: Option<Result<AccessDecision, ClusterError>>,
}

impl FlightGuard {
    /// Ends the flight with `result`.
    fn finish(mut self, result: Result<AccessDecision, ClusterError>) {
        self.result = Some(result);
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let result = self.result.take().unwrap_or_else(|| {
            Err(authz_error(
                "the SubjectAccessReview was cancelled (is the server shutting down?)",
            ))
        });
        {
            let mut state = lock(&self.state);
            if state
                .in_flight
                .get(&self.request)
                .is_some_and(|flight| Arc::ptr_eq(flight, &self.flight))
            {
                state.in_flight.remove(&self.request);
            }
            if let Ok(decision) = &result {
                state.remember(
                    self.request.clone(),
                    decision.clone(),
                    &self.settings,
                    Instant::now(),
                );
            }
        }
        self.flight.complete(result);
    }
}

/// A `windows.k8s.io/v1` GMSACredentialSpec as the API server serves it.
///
/// Its data is a top-level `credspec` field rather than `spec`, so kube's `CustomResource`
/// derive does not fit and [`Resource`] is implemented by hand. Stripping
/// ([`strip_gmsa_for_cache`]) moves the data into `cached`, the value lookups hand out.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
struct GmsaCredentialSpecObject {
    metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    credspec: Option<serde_json::Value>,
    /// What [`ClusterView::gmsa_credential_spec`] returns, built once when the object is
    /// cached.
    #[serde(skip)]
    cached: Option<Arc<GmsaCredentialSpec>>,
}

impl GmsaCredentialSpecObject {
    fn to_spec(&self) -> Arc<GmsaCredentialSpec> {
        match &self.cached {
            Some(spec) => Arc::clone(spec),
            None => Arc::new(GmsaCredentialSpec {
                name: self.metadata.name.clone().unwrap_or_default(),
                credspec: self.credspec.clone(),
            }),
        }
    }
}

impl Resource for GmsaCredentialSpecObject {
    type DynamicType = ();
    type Scope = ClusterResourceScope;

    fn kind((): &()) -> Cow<'_, str> {
        Cow::Borrowed("GMSACredentialSpec")
    }

    fn group((): &()) -> Cow<'_, str> {
        Cow::Borrowed("windows.k8s.io")
    }

    fn version((): &()) -> Cow<'_, str> {
        Cow::Borrowed("v1")
    }

    fn plural((): &()) -> Cow<'_, str> {
        Cow::Borrowed("gmsacredentialspecs")
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// What a reflector does when the API server says its resource does not exist (404 Not
/// Found on list or watch), as for a CRD that is not installed.
#[derive(Debug, Clone, Copy)]
enum NotFound {
    /// An error like any other: retry with backoff, stay unsynced until a list succeeds.
    Retry,
    /// The cluster has none of these objects: empty the cache and count it as synced, log
    /// `warning` (once per disappearance), and keep retrying in the background.
    Empty { warning: &'static str },
}

/// Whether `error` says the watched resource is not served at all.
fn is_not_found(error: &watcher::Error) -> bool {
    matches!(
        error,
        watcher::Error::InitialListFailed(kube::Error::Api(status))
            | watcher::Error::WatchStartFailed(kube::Error::Api(status))
            if status.is_not_found()
    )
}

/// Whether `error` is a watch refused with `410 Gone`: its resourceVersion is too old, and
/// only a new list can resume watching.
fn is_gone_on_watch_start(error: &watcher::Error) -> bool {
    matches!(
        error,
        watcher::Error::WatchStartFailed(kube::Error::Api(status)) if status.code == 410
    )
}

/// Where a watch task writes the events it receives: a reflector store, or a per-namespace
/// index. Either builds a re-list aside from [`watcher::Event::Init`] to
/// [`watcher::Event::InitDone`] and swaps it in whole, so lookups never see half a list.
trait EventSink<K>: Send + 'static {
    fn apply(&mut self, event: watcher::Event<K>);
}

impl<K> EventSink<K> for Writer<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    fn apply(&mut self, event: watcher::Event<K>) {
        self.apply_watcher_event(&event);
    }
}

/// The task watching one resource kind, and whether its initial list has completed.
///
/// A cache is empty until the first list completes, so reading it before then would report
/// existing objects as absent; `synced` is what lets lookups say "not synced" instead.
#[derive(Debug, Clone)]
struct WatchTask {
    /// Plural resource name, such as `namespaces`, for errors and logs.
    resource: &'static str,
    synced: watch::Receiver<bool>,
    _task: Arc<AbortOnDrop>,
}

impl WatchTask {
    /// Spawns the task watching every `K` that `api` can see, writing events into `sink`.
    ///
    /// `strip` runs on every object before it is written, to drop what no policy reads.
    /// `not_found` says what a 404 from the API server means.
    fn spawn<K, S>(
        api: Api<K>,
        resource: &'static str,
        strip: fn(&mut K),
        not_found: NotFound,
        mut sink: S,
    ) -> Self
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
        S: EventSink<K>,
    {
        let (synced_tx, synced) = watch::channel(false);
        let mark_synced =
            move || synced_tx.send_if_modified(|synced| !std::mem::replace(synced, true));
        // Backoff between retries: without it, a failing watcher re-lists in a tight loop and
        // hammers the API server. Stripping before the cache keeps the caches small.
        let start = move || {
            watcher(api.clone(), watcher::Config::default())
                .default_backoff()
                .modify(strip)
        };
        let task = tokio::spawn(async move {
            let mut stream = pin!(start());
            // Whether the last thing heard was "not found" (so the cache is the empty stand-in).
            let mut missing = false;
            // The pauses before restarts forced by `410 Gone` (see below), growing if they
            // repeat, as the watcher's own backoff would (and, like it, back to short after two
            // quiet minutes: a list that succeeds does not reset it, or a watch that keeps
            // failing with 410 right after each list would re-list every second).
            let mut restarts = watcher::DefaultBackoff::default();
            while let Some(event) = stream.next().await {
                match event {
                    Ok(event) => {
                        let init_done = matches!(event, watcher::Event::InitDone);
                        // Written here rather than through `reflector()` so that a missing
                        // resource can be written as an empty list too.
                        sink.apply(event);
                        if init_done {
                            // The complete list has just been swapped into the cache.
                            if mark_synced() {
                                tracing::info!(resource, "cache synced with the API server");
                            } else if std::mem::take(&mut missing) {
                                tracing::info!(
                                    resource,
                                    "the resource is served now; cache synced"
                                );
                            } else {
                                tracing::debug!(resource, "cache re-listed");
                            }
                        }
                    }
                    // kube's watcher answers a watch refused with `410 Gone` (its
                    // resourceVersion is older than the API server's history) by retrying the
                    // same resourceVersion forever, never re-listing (kube-rs/kube#1042). A new
                    // watcher starts with a list; as after an expired watch event, the cache
                    // keeps serving its last contents until that list replaces them.
                    Err(error) if is_gone_on_watch_start(&error) => {
                        tracing::warn!(
                            resource,
                            error = &error as &dyn std::error::Error,
                            "the API server no longer has the watch's resourceVersion; re-listing"
                        );
                        let pause = restarts.next().unwrap_or(Duration::from_secs(30));
                        tokio::time::sleep(pause).await;
                        stream.set(start());
                    }
                    Err(error) => match not_found {
                        NotFound::Empty { warning } if is_not_found(&error) => {
                            // As if an empty list had completed: swap an empty cache in.
                            sink.apply(watcher::Event::Init);
                            sink.apply(watcher::Event::InitDone);
                            mark_synced();
                            if std::mem::replace(&mut missing, true) {
                                tracing::debug!(resource, "resource still not served; retrying");
                            } else {
                                tracing::warn!(resource, "{warning}");
                            }
                        }
                        // The watcher re-lists or re-watches by itself on the next poll, after
                        // the backoff delay; the cache keeps serving its last contents meanwhile.
                        _ => tracing::warn!(
                            resource,
                            error = &error as &dyn std::error::Error,
                            "watching the API server failed; retrying"
                        ),
                    },
                }
            }
            // A watcher stream never ends on its own; if it does, the cache is frozen.
            tracing::error!(
                resource,
                "watch stream ended; the cache will no longer be updated"
            );
        });
        Self {
            resource,
            synced,
            _task: Arc::new(AbortOnDrop(task)),
        }
    }

    fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    async fn wait_synced(&self) -> Result<(), ClusterError> {
        let mut synced = self.synced.clone();
        match synced.wait_for(|synced| *synced).await {
            Ok(_) => Ok(()),
            Err(_) => Err(ClusterError::Unavailable(format!(
                "the {} watch stopped before its initial list completed",
                self.resource
            ))),
        }
    }

    /// [`ClusterError::NotSynced`] unless the initial list has completed.
    fn check_synced(&self) -> Result<(), ClusterError> {
        if self.is_synced() {
            Ok(())
        } else {
            Err(ClusterError::NotSynced {
                resource: self.resource,
            })
        }
    }
}

/// One cluster-scoped or rarely scanned kind's cache: a kube reflector store, keyed by
/// namespace and name.
#[derive(Debug)]
struct Reflector<K>
where
    K: Resource<DynamicType = ()> + 'static,
{
    watch: WatchTask,
    store: Store<K>,
}

// Derived `Clone` would require `K: Clone`, which cloning a handle does not need.
impl<K> Clone for Reflector<K>
where
    K: Resource<DynamicType = ()> + 'static,
{
    fn clone(&self) -> Self {
        Self {
            watch: self.watch.clone(),
            store: self.store.clone(),
        }
    }
}

impl<K> Reflector<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// Spawns the watch task for every `K` that `api` can see and returns the cache handle;
    /// see [`WatchTask::spawn`].
    fn start(api: Api<K>, resource: &'static str, strip: fn(&mut K), not_found: NotFound) -> Self {
        let (store, writer) = reflector::store();
        Self {
            watch: WatchTask::spawn(api, resource, strip, not_found, writer),
            store,
        }
    }

    fn get(&self, key: &ObjectRef<K>) -> Result<Option<Arc<K>>, ClusterError> {
        self.watch.check_synced()?;
        Ok(self.store.get(key))
    }

    /// Every cached object matching `predicate`: a scan of the whole cache, holding its read
    /// lock (so watch events wait) while `predicate` runs on each object.
    fn filter(&self, predicate: impl Fn(&K) -> bool) -> Result<Vec<Arc<K>>, ClusterError> {
        self.watch.check_synced()?;
        Ok(self.store.state_filter(predicate))
    }
}

/// Objects of one namespaced kind, by namespace and then by name.
///
/// Lookups by namespace cost O(objects in that namespace), not O(objects in the cluster) as a
/// reflector store (a flat map) would; names are ordered so lookups return them sorted.
#[derive(Debug)]
struct NamespacedIndex<V> {
    namespaces: HashMap<String, BTreeMap<String, V>>,
}

// Derived `Default` would require `V: Default`.
impl<V> Default for NamespacedIndex<V> {
    fn default() -> Self {
        Self {
            namespaces: HashMap::new(),
        }
    }
}

impl<V> NamespacedIndex<V> {
    fn insert(&mut self, namespace: &str, name: String, value: V) {
        // Look up before allocating: most events concern a namespace already known.
        let names = match self.namespaces.get_mut(namespace) {
            Some(names) => names,
            None => self.namespaces.entry(namespace.to_owned()).or_default(),
        };
        names.insert(name, value);
    }

    /// Removes `namespace/name`, and the namespace's entry once it is empty, so deleted
    /// namespaces do not accumulate.
    fn remove(&mut self, namespace: &str, name: &str) {
        if let Some(names) = self.namespaces.get_mut(namespace) {
            names.remove(name);
            if names.is_empty() {
                self.namespaces.remove(namespace);
            }
        }
    }

    fn namespace(&self, namespace: &str) -> Option<&BTreeMap<String, V>> {
        self.namespaces.get(namespace)
    }
}

/// The namespace and name of `object`, which a namespaced object always has; `None` (and the
/// event is ignored) for a malformed one.
fn namespace_and_name<'a, K: Resource>(
    object: &'a K,
    resource: &'static str,
) -> Option<(&'a str, &'a str)> {
    let meta = object.meta();
    match (meta.namespace.as_deref(), meta.name.as_deref()) {
        (Some(namespace), Some(name)) => Some((namespace, name)),
        _ => {
            tracing::debug!(
                resource,
                ?meta,
                "ignoring a watched object without a namespace or name"
            );
            None
        }
    }
}

/// Writes watch events into a [`NamespacedIndex`], as kube's store writer does into a store.
struct IndexWriter<K, V> {
    resource: &'static str,
    index: Arc<RwLock<NamespacedIndex<V>>>,
    /// The list under way, from `Init` to `InitDone`: built aside, then swapped in whole, so
    /// lookups keep the previous contents until then and objects deleted while the watch was
    /// down (absent from the new list) disappear.
    relist: Option<NamespacedIndex<V>>,
    /// What is kept of an object.
    value: fn(K) -> V,
}

impl<K, V> EventSink<K> for IndexWriter<K, V>
where
    K: Resource + Send + 'static,
    V: Send + Sync + 'static,
{
    fn apply(&mut self, event: watcher::Event<K>) {
        match event {
            watcher::Event::Apply(object) => {
                if let Some((namespace, name)) = namespace_and_name(&object, self.resource) {
                    let (namespace, name) = (namespace.to_owned(), name.to_owned());
                    let value = (self.value)(object);
                    write(&self.index).insert(&namespace, name, value);
                }
            }
            watcher::Event::Delete(object) => {
                if let Some((namespace, name)) = namespace_and_name(&object, self.resource) {
                    write(&self.index).remove(namespace, name);
                }
            }
            watcher::Event::Init => self.relist = Some(NamespacedIndex::default()),
            watcher::Event::InitApply(object) => {
                if let Some((namespace, name)) = namespace_and_name(&object, self.resource) {
                    let (namespace, name) = (namespace.to_owned(), name.to_owned());
                    let value = (self.value)(object);
                    self.relist
                        .get_or_insert_with(NamespacedIndex::default)
                        .insert(&namespace, name, value);
                }
            }
            watcher::Event::InitDone => {
                let listed = self.relist.take().unwrap_or_default();
                let previous = std::mem::replace(&mut *write(&self.index), listed);
                // Freed after the write lock is released, so lookups do not wait for it.
                drop(previous);
            }
        }
    }
}

/// One namespaced kind's cache, indexed by namespace (see [`NamespacedIndex`]), for kinds
/// looked up per namespace on the admission hot path.
#[derive(Clone)]
struct NamespacedCache<V> {
    watch: WatchTask,
    index: Arc<RwLock<NamespacedIndex<V>>>,
}

impl<V> Debug for NamespacedCache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamespacedCache")
            .field("watch", &self.watch)
            .field("namespaces", &read(&self.index).namespaces.len())
            .finish()
    }
}

impl<V> NamespacedCache<V>
where
    V: Clone + Send + Sync + 'static,
{
    /// Spawns the watch task for every `K` that `api` can see, keeping `value(object)` for
    /// each; see [`WatchTask::spawn`]. A 404 is retried like any error, as for a built-in kind.
    fn start<K>(api: Api<K>, resource: &'static str, strip: fn(&mut K), value: fn(K) -> V) -> Self
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
    {
        let index = Arc::new(RwLock::new(NamespacedIndex::default()));
        let writer = IndexWriter {
            resource,
            index: Arc::clone(&index),
            relist: None,
            value,
        };
        Self {
            watch: WatchTask::spawn(api, resource, strip, NotFound::Retry, writer),
            index,
        }
    }

    /// The values of `namespace`'s objects, ordered by name.
    fn values(&self, namespace: &str) -> Result<Vec<V>, ClusterError> {
        self.watch.check_synced()?;
        Ok(read(&self.index)
            .namespace(namespace)
            .map(|names| names.values().cloned().collect())
            .unwrap_or_default())
    }

    /// Whether `namespace/name` is cached.
    fn contains(&self, namespace: &str, name: &str) -> Result<bool, ClusterError> {
        self.watch.check_synced()?;
        Ok(read(&self.index)
            .namespace(namespace)
            .is_some_and(|names| names.contains_key(name)))
    }
}

/// Read-locks `lock`, ignoring poisoning: the index is updated by single inserts, removals and
/// swaps, so a panic elsewhere cannot leave it half-changed.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// Write-locks `lock`, ignoring poisoning, as [`read`].
fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// Drops fields no policy reads and that can dominate an object's size in memory.
fn strip_for_cache<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED_ANNOTATION);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// [`strip_for_cache`], and more for Pods: keeps only the spec and the metadata a policy or a
/// warning about the pod can use (name, namespace, labels, annotations, owner references).
///
/// Dropped: `status` (container statuses, conditions and IPs change constantly and no policy
/// judges a pod by them) and the remaining bookkeeping metadata (uid, resourceVersion,
/// timestamps, finalizers, generateName, ...). The watcher has already read the
/// resourceVersion it resumes from before this runs, and the store keys objects by namespace
/// and name alone, so neither needs it.
fn strip_pod_for_cache(pod: &mut Pod) {
    strip_for_cache(pod);
    pod.status = None;
    let meta = std::mem::take(&mut pod.metadata);
    pod.metadata = ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        labels: meta.labels,
        annotations: meta.annotations,
        owner_references: meta.owner_references,
        ..ObjectMeta::default()
    };
}

/// Keeps only what a GMSACredentialSpec lookup returns: the name (also the store's key) and
/// the `credspec`, moved into the shared [`GmsaCredentialSpec`] so lookups clone an `Arc`
/// rather than the JSON. All other metadata goes, as for Pods (see [`strip_pod_for_cache`]).
fn strip_gmsa_for_cache(object: &mut GmsaCredentialSpecObject) {
    let name = object.metadata.name.take();
    object.cached = Some(Arc::new(GmsaCredentialSpec {
        name: name.clone().unwrap_or_default(),
        credspec: object.credspec.take(),
    }));
    object.metadata = ObjectMeta {
        name,
        ..ObjectMeta::default()
    };
}

/// Aborts the watch task when the last [`LiveCluster`] clone goes away.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Building a Kubernetes client failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LiveClusterError {
    /// The kubeconfig file could not be read or parsed.
    #[error("cannot read kubeconfig {}", path.display())]
    ReadKubeconfig {
        /// The kubeconfig file.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: KubeconfigError,
    },
    /// The kubeconfig file was read but does not describe a usable connection.
    #[error("cannot use kubeconfig {}", path.display())]
    LoadKubeconfig {
        /// The kubeconfig file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: KubeconfigError,
    },
    /// Neither `$KUBECONFIG` / `~/.kube/config` nor an in-cluster service account was usable.
    #[error("cannot find a Kubernetes configuration (kubeconfig or in-cluster)")]
    Infer(#[source] InferConfigError),
    /// The configuration was found but a client could not be built from it.
    #[error("cannot build a Kubernetes client")]
    Client(#[source] kube::Error),
}

/// Builds a Kubernetes client from the kubeconfig at `path`, or else from the environment.
///
/// Without a path, kube's inference applies: `$KUBECONFIG` or `~/.kube/config` first, then the
/// in-cluster service account. An explicit path always wins, so a misconfigured file is
/// reported rather than silently replaced by another configuration.
///
/// # Errors
///
/// [`LiveClusterError`] if the configuration cannot be read or used.
pub async fn client_from_kubeconfig(path: Option<&Path>) -> Result<Client, LiveClusterError> {
    let config = match path {
        Some(path) => {
            let kubeconfig =
                Kubeconfig::read_from(path).map_err(|source| LiveClusterError::ReadKubeconfig {
                    path: path.to_owned(),
                    source,
                })?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|source| LiveClusterError::LoadKubeconfig {
                    path: path.to_owned(),
                    source,
                })?
        }
        None => Config::infer().await.map_err(LiveClusterError::Infer)?,
    };
    Client::try_from(config).map_err(LiveClusterError::Client)
}
