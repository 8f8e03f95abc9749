//! The live cluster view: in-memory caches kept current by watching the API server.
//!
//! Each resource kind gets one reflector (a `watcher` feeding a reflector `Store`) running in
//! its own tokio task. Admission lookups only read those stores, so the hot path never waits
//! on the API server; the price is that answers may lag the cluster by a watch event.
//!
//! Two kinds are watched: Namespaces (their labels select Pod Security levels) and Pods (checked
//! against a namespace's new level when its labels change). Objects are stripped of what no
//! policy reads before they are stored; for Pods, the largest objects in most clusters, that
//! is everything but the identifying metadata and the spec.

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kadmit_core::{ClusterError, ClusterView};
use kube::config::{InferConfigError, KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Config, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Annotation `kubectl apply` writes: a full copy of the applied object, useless to policies.
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The server's [`ClusterView`], answering from watch-backed in-memory caches.
///
/// Cloning is cheap (every field is reference counted) so each request handler can hold one.
/// The watch tasks stop when the last clone is dropped, so a discarded view does not keep
/// watching the API server.
#[derive(Debug, Clone)]
pub struct LiveCluster {
    namespaces: Reflector<Namespace>,
    pods: Reflector<Pod>,
}

impl LiveCluster {
    /// Starts watching the cluster through `client` and returns the (not yet synced) view.
    ///
    /// Returns at once: the initial lists happen in background tasks, and lookups answer
    /// [`ClusterError::NotSynced`] until they complete (see [`LiveCluster::wait_synced`]).
    /// Must be called from within a tokio runtime, because it spawns the watch tasks.
    #[must_use]
    pub fn start(client: Client) -> Self {
        Self {
            namespaces: Reflector::start(Api::all(client.clone()), "namespaces", strip_for_cache),
            pods: Reflector::start(Api::all(client), "pods", strip_pod_for_cache),
        }
    }

    /// Whether every cache has completed its initial list, so lookups can be answered.
    ///
    /// Stays true after a later re-list (for example after the watch expired): the cache keeps
    /// serving its previous contents until the new list replaces them in one step.
    #[must_use]
    pub fn is_synced(&self) -> bool {
        self.namespaces.is_synced() && self.pods.is_synced()
    }

    /// Waits until every cache has completed its initial list.
    ///
    /// This can wait forever if the API server is unreachable; bound it with a timeout.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Unavailable`] if a watch task stopped before its initial list completed.
    pub async fn wait_synced(&self) -> Result<(), ClusterError> {
        futures::try_join!(self.namespaces.wait_synced(), self.pods.wait_synced())?;
        Ok(())
    }
}

impl ClusterView for LiveCluster {
    fn namespace(&self, name: &str) -> Result<Option<Arc<Namespace>>, ClusterError> {
        self.namespaces.get(&ObjectRef::new(name))
    }

    /// The cached pods whose `metadata.namespace` is `namespace`, stripped as described in
    /// [`strip_pod_for_cache`] (no `status`, no managed fields).
    ///
    /// Cost: the reflector store is a flat map keyed by namespace and name, so this scans every
    /// cached pod in the cluster (under the store's read lock) and clones the `Arc`s of the
    /// matches: O(pods in the cluster) per call. That is acceptable because the only caller is
    /// Pod Security when a namespace's enforce label changes, which is rare; a per-namespace
    /// index would have to re-implement the store's atomic swap on re-list, so it is not kept.
    fn pods(&self, namespace: &str) -> Result<Vec<Arc<Pod>>, ClusterError> {
        self.pods
            .filter(|pod| pod.metadata.namespace.as_deref() == Some(namespace))
    }
}

/// One resource kind's cache: a reflector store plus whether its initial list has completed.
///
/// A store is empty until the first list completes, so reading it before then would report
/// existing objects as absent; `synced` is what lets lookups say "not synced" instead.
#[derive(Debug)]
struct Reflector<K>
where
    K: Resource<DynamicType = ()> + 'static,
{
    /// Plural resource name, such as `namespaces`, for errors and logs.
    resource: &'static str,
    store: Store<K>,
    synced: watch::Receiver<bool>,
    _task: Arc<AbortOnDrop>,
}

// Derived `Clone` would require `K: Clone`, which cloning a handle does not need.
impl<K> Clone for Reflector<K>
where
    K: Resource<DynamicType = ()> + 'static,
{
    fn clone(&self) -> Self {
        Self {
            resource: self.resource,
            store: self.store.clone(),
            synced: self.synced.clone(),
            _task: Arc::clone(&self._task),
        }
    }
}

impl<K> Reflector<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// Spawns the watch task for every `K` that `api` can see and returns the cache handle.
    ///
    /// `strip` runs on every object before it is stored, to drop what no policy reads.
    fn start(api: Api<K>, resource: &'static str, strip: fn(&mut K)) -> Self {
        let (store, writer) = reflector::store();
        let (synced_tx, synced) = watch::channel(false);
        // Backoff between retries: without it, a failing watcher re-lists in a tight loop and
        // hammers the API server. Stripping before the store keeps the caches small.
        let stream = reflector(
            writer,
            watcher(api, watcher::Config::default())
                .default_backoff()
                .modify(strip),
        );
        let task = tokio::spawn(async move {
            let mut stream = pin!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::InitDone) => {
                        // The reflector has already swapped the complete list into the store.
                        if synced_tx.send_if_modified(|synced| !std::mem::replace(synced, true)) {
                            tracing::info!(resource, "cache synced with the API server");
                        } else {
                            tracing::debug!(resource, "cache re-listed");
                        }
                    }
                    Ok(_) => {}
                    // The watcher re-lists or re-watches by itself on the next poll, after the
                    // backoff delay; the store keeps serving its last contents meanwhile.
                    Err(error) => tracing::warn!(
                        resource,
                        error = &error as &dyn std::error::Error,
                        "watching the API server failed; retrying"
                    ),
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
            store,
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

    fn get(&self, key: &ObjectRef<K>) -> Result<Option<Arc<K>>, ClusterError> {
        self.check_synced()?;
        Ok(self.store.get(key))
    }

    /// Every cached object matching `predicate`: a scan of the whole cache, holding its read
    /// lock (so watch events wait) while `predicate` runs on each object.
    fn filter(&self, predicate: impl Fn(&K) -> bool) -> Result<Vec<Arc<K>>, ClusterError> {
        self.check_synced()?;
        Ok(self.store.state_filter(predicate))
    }
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
