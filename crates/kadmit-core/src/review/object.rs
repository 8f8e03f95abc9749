//! Decoding `object` / `oldObject` as the kind the request claims.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, PodTemplate, ReplicationController};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::GroupVersionKind;
use super::decode::strip_position;
use super::meter::{Meter, Metered};
use super::skip::{self, Skip, Skipping};
use crate::pod::{ObjectMeta, Pod, PodTemplateSpec};

/// An object kadmit's policies read, decoded once per review and shared by every policy.
#[derive(Debug, Clone, PartialEq)]
pub enum TypedObject {
    /// A core/v1 Pod.
    Pod(Box<Pod>),
    /// A core/v1 Namespace.
    Namespace(Box<Namespace>),
    /// A resource with a pod template (Deployment, Job, ...): what policies read of it.
    Workload(Box<Workload>),
}

/// The kinds whose objects carry a pod template, which Pod Security evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadKind {
    /// core/v1 ReplicationController (`spec.template`).
    ReplicationController,
    /// core/v1 PodTemplate (`template`).
    PodTemplate,
    /// apps/v1 ReplicaSet (`spec.template`).
    ReplicaSet,
    /// apps/v1 Deployment (`spec.template`).
    Deployment,
    /// apps/v1 StatefulSet (`spec.template`).
    StatefulSet,
    /// apps/v1 DaemonSet (`spec.template`).
    DaemonSet,
    /// batch/v1 Job (`spec.template`).
    Job,
    /// batch/v1 CronJob (`spec.jobTemplate.spec.template`).
    CronJob,
}

impl WorkloadKind {
    /// All of them.
    pub const ALL: [WorkloadKind; 8] = [
        WorkloadKind::ReplicationController,
        WorkloadKind::PodTemplate,
        WorkloadKind::ReplicaSet,
        WorkloadKind::Deployment,
        WorkloadKind::StatefulSet,
        WorkloadKind::DaemonSet,
        WorkloadKind::Job,
        WorkloadKind::CronJob,
    ];

    /// The kind's name, such as `Deployment`.
    pub fn kind(self) -> &'static str {
        match self {
            WorkloadKind::ReplicationController => "ReplicationController",
            WorkloadKind::PodTemplate => "PodTemplate",
            WorkloadKind::ReplicaSet => "ReplicaSet",
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::Job => "Job",
            WorkloadKind::CronJob => "CronJob",
        }
    }

    /// The API group: `""`, `apps` or `batch`.
    pub fn group(self) -> &'static str {
        match self {
            WorkloadKind::ReplicationController | WorkloadKind::PodTemplate => "",
            WorkloadKind::ReplicaSet
            | WorkloadKind::Deployment
            | WorkloadKind::StatefulSet
            | WorkloadKind::DaemonSet => "apps",
            WorkloadKind::Job | WorkloadKind::CronJob => "batch",
        }
    }

    /// The workload kind `gvk` names (version `v1` of its group), if any.
    pub fn from_gvk(gvk: &GroupVersionKind) -> Option<WorkloadKind> {
        if gvk.version != "v1" {
            return None;
        }
        WorkloadKind::ALL
            .into_iter()
            .find(|k| k.group() == gvk.group && k.kind() == gvk.kind)
    }

    /// Where the pod template is, for messages.
    pub fn template_path(self) -> &'static str {
        match self {
            WorkloadKind::PodTemplate => "template",
            WorkloadKind::CronJob => "spec.jobTemplate.spec.template",
            _ => "spec.template",
        }
    }
}

/// What policies read of a workload: its own metadata and its pod template.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Which kind.
    pub kind: WorkloadKind,
    /// The workload's metadata (not the template's).
    pub metadata: ObjectMeta,
    /// The pod template; `None` when the object has none (which API validation would refuse).
    pub template: Option<PodTemplateSpec>,
}

impl Workload {
    /// Decodes `raw` as a `kind` and keeps its metadata and pod template.
    fn decode(
        kind: WorkloadKind,
        raw: &RawValue,
        field: &'static str,
        meter: &Meter,
    ) -> Result<Workload, ObjectError> {
        let (metadata, template) = match kind {
            WorkloadKind::ReplicationController => {
                let o: ReplicationController =
                    decode_skipping(raw, field, "v1 ReplicationController", None, meter)?;
                (o.metadata, o.spec.and_then(|s| s.template))
            }
            WorkloadKind::PodTemplate => {
                let o: PodTemplate = decode_skipping(raw, field, "v1 PodTemplate", None, meter)?;
                (o.metadata, o.template)
            }
            WorkloadKind::ReplicaSet => {
                let o: ReplicaSet = decode_skipping(raw, field, "apps/v1 ReplicaSet", None, meter)?;
                (o.metadata, o.spec.template)
            }
            WorkloadKind::Deployment => {
                let o: Deployment = decode_skipping(raw, field, "apps/v1 Deployment", None, meter)?;
                (o.metadata, Some(o.spec.template))
            }
            WorkloadKind::StatefulSet => {
                let o: StatefulSet =
                    decode_skipping(raw, field, "apps/v1 StatefulSet", None, meter)?;
                (o.metadata, Some(o.spec.template))
            }
            WorkloadKind::DaemonSet => {
                let o: DaemonSet = decode_skipping(raw, field, "apps/v1 DaemonSet", None, meter)?;
                (o.metadata, Some(o.spec.template))
            }
            WorkloadKind::Job => {
                let o: Job = decode_skipping(raw, field, "batch/v1 Job", None, meter)?;
                (o.metadata, o.spec.map(|s| s.template))
            }
            WorkloadKind::CronJob => {
                let o: CronJob = decode_skipping(raw, field, "batch/v1 CronJob", None, meter)?;
                (o.metadata, o.spec.job_template.spec.map(|s| s.template))
            }
        };
        Ok(Workload {
            kind,
            metadata: ObjectMeta::from(&metadata),
            template: template.as_ref().map(PodTemplateSpec::from),
        })
    }
}

impl Workload {
    /// Decodes a `kind` from `de` and keeps its metadata and pod template (for the one-pass
    /// decoder; [`Workload::decode`] is the raw-JSON path with precise errors).
    pub(crate) fn deserialize_as<'de, D: serde::Deserializer<'de>>(
        kind: WorkloadKind,
        de: D,
    ) -> Result<Workload, D::Error> {
        use serde::Deserialize;
        let (metadata, template) = match kind {
            WorkloadKind::ReplicationController => {
                let o = ReplicationController::deserialize(de)?;
                (o.metadata, o.spec.and_then(|s| s.template))
            }
            WorkloadKind::PodTemplate => {
                let o = PodTemplate::deserialize(de)?;
                (o.metadata, o.template)
            }
            WorkloadKind::ReplicaSet => {
                let o = ReplicaSet::deserialize(de)?;
                (o.metadata, o.spec.template)
            }
            WorkloadKind::Deployment => {
                let o = Deployment::deserialize(de)?;
                (o.metadata, Some(o.spec.template))
            }
            WorkloadKind::StatefulSet => {
                let o = StatefulSet::deserialize(de)?;
                (o.metadata, Some(o.spec.template))
            }
            WorkloadKind::DaemonSet => {
                let o = DaemonSet::deserialize(de)?;
                (o.metadata, Some(o.spec.template))
            }
            WorkloadKind::Job => {
                let o = Job::deserialize(de)?;
                (o.metadata, o.spec.map(|s| s.template))
            }
            WorkloadKind::CronJob => {
                let o = CronJob::deserialize(de)?;
                (o.metadata, o.spec.job_template.spec.map(|s| s.template))
            }
        };
        Ok(Workload {
            kind,
            metadata: ObjectMeta::from(&metadata),
            template: template.as_ref().map(PodTemplateSpec::from),
        })
    }
}

/// `object` or `oldObject` does not decode as the kind the request says it is.
///
/// The API server never sends this; a client that does gets a denial with code 400 whose
/// message names the field inside the object, rather than a policy silently skipping it. Only
/// members kadmit reads are checked: a pod's members outside `crate::pod`'s model are passed
/// over unread, whatever they hold, as if they had not been sent.
///
/// It is also what an object too large to evaluate gets (`too_large`): decoding it would build
/// more in memory than the limit allows, and the message names the list where it stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{field} {}: {path}{message}",
    if *too_large { "is too large to evaluate".to_owned() } else { format!("does not decode as a {kind}") }
)]
pub struct ObjectError {
    /// `object` or `oldObject`.
    pub field: &'static str,
    /// The claimed kind, such as `v1 Pod`.
    pub kind: &'static str,
    /// Where inside the object, followed by `: `; empty when the object itself is wrong.
    pub path: String,
    /// What is wrong there.
    pub message: String,
    /// Whether decoding stopped at the memory limit rather than at a malformed member.
    pub too_large: bool,
}

impl TypedObject {
    /// Decodes `raw` as the kind `gvk` names, or returns `None` for kinds no policy reads.
    ///
    /// `field` is `object` or `oldObject`, for the error message.
    pub fn decode(
        gvk: &GroupVersionKind,
        raw: &RawValue,
        field: &'static str,
    ) -> Result<Option<TypedObject>, ObjectError> {
        let meter = Meter::new(super::DEFAULT_MAX_DECODED_BYTES);
        Self::decode_metered(gvk, raw, field, skip::pod_for(None), &meter)
    }

    /// [`TypedObject::decode`], skipping `skip` in a pod and charging what it builds to
    /// `meter`.
    pub(crate) fn decode_metered(
        gvk: &GroupVersionKind,
        raw: &RawValue,
        field: &'static str,
        skip: Option<Skip>,
        meter: &Meter,
    ) -> Result<Option<TypedObject>, ObjectError> {
        if gvk.is_core_v1("Pod") {
            decode_skipping::<Pod>(raw, field, "v1 Pod", skip, meter)
                .map(|p| Some(TypedObject::Pod(Box::new(p))))
        } else if gvk.is_core_v1("Namespace") {
            decode_skipping::<Namespace>(raw, field, "v1 Namespace", None, meter)
                .map(|n| Some(TypedObject::Namespace(Box::new(n))))
        } else if let Some(kind) = WorkloadKind::from_gvk(gvk) {
            Workload::decode(kind, raw, field, meter)
                .map(|w| Some(TypedObject::Workload(Box::new(w))))
        } else {
            Ok(None)
        }
    }

    /// The pod, if this is one.
    pub fn as_pod(&self) -> Option<&Pod> {
        match self {
            TypedObject::Pod(pod) => Some(pod),
            _ => None,
        }
    }

    /// The pod, if this is one, to change in place.
    pub fn as_pod_mut(&mut self) -> Option<&mut Pod> {
        match self {
            TypedObject::Pod(pod) => Some(pod),
            _ => None,
        }
    }

    /// The workload, if this is one.
    pub fn as_workload(&self) -> Option<&Workload> {
        match self {
            TypedObject::Workload(w) => Some(w),
            _ => None,
        }
    }

    /// The namespace, if this is one.
    pub fn as_namespace(&self) -> Option<&Namespace> {
        match self {
            TypedObject::Namespace(ns) => Some(ns),
            _ => None,
        }
    }
}

/// Decodes `raw` as `T`, passing over the members `skip` lists (see [`super::skip`]) and
/// charging what it builds to `meter`; on failure names `field`, `kind` and the path inside the
/// object.
fn decode_skipping<T: DeserializeOwned>(
    raw: &RawValue,
    field: &'static str,
    kind: &'static str,
    skip: Option<Skip>,
    meter: &Meter,
) -> Result<T, ObjectError> {
    // As for the review itself: the plain decoder first, path tracking only to explain a
    // failure (it would double the cost of every well-formed object). `raw` is one JSON value,
    // so nothing can follow it.
    let start = meter.used();
    let mut de = serde_json::Deserializer::from_str(raw.get());
    let fast = match skip {
        Some(skip) => T::deserialize(Skipping::new(Metered::new(&mut de, meter), skip)),
        None => T::deserialize(Metered::new(&mut de, meter)),
    };
    if let Ok(object) = fast {
        return Ok(object);
    }
    // Again from where the meter stood, so that it stops at the same place.
    let retry = Meter::starting_at(meter.limit(), start);
    let mut de = serde_json::Deserializer::from_str(raw.get());
    let metered = Metered::new(&mut de, &retry);
    let tracked = match skip {
        Some(skip) => serde_path_to_error::deserialize(Skipping::new(metered, skip)),
        None => serde_path_to_error::deserialize(metered),
    };
    tracked.map_err(|err| {
        let path = err.path().to_string();
        let path = if path == "." {
            String::new()
        } else {
            format!("{path}: ")
        };
        ObjectError {
            field,
            kind,
            path,
            // The meter's own words, which quote nothing from the object.
            message: if retry.tripped() {
                let text = err.inner().to_string();
                match text.rfind(" at line ") {
                    Some(at) => text[..at].to_owned(),
                    None => text,
                }
            } else {
                strip_position(err.inner())
            },
            too_large: retry.tripped(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_gvk() -> GroupVersionKind {
        GroupVersionKind {
            group: String::new(),
            version: "v1".into(),
            kind: "Pod".into(),
        }
    }

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn names_the_field_inside_the_object() {
        let err = TypedObject::decode(
            &pod_gvk(),
            &raw(r#"{"metadata":{"name":"p"},"spec":{"containers":[{"name":"c","ports":"80"}]}}"#),
            "object",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "object does not decode as a v1 Pod: spec.containers[0].ports: invalid type: string, expected a sequence"
        );
        let err = TypedObject::decode(&pod_gvk(), &raw(r#""None""#), "oldObject").unwrap_err();
        assert!(
            err.to_string().starts_with(
                "oldObject does not decode as a v1 Pod: invalid type: string, expected"
            ),
            "{err}"
        );
    }

    #[test]
    fn other_kinds_are_not_decoded() {
        let gvk = GroupVersionKind {
            group: "networking.k8s.io".into(),
            version: "v1".into(),
            kind: "Ingress".into(),
        };
        assert_eq!(
            TypedObject::decode(&gvk, &raw("\"anything\""), "object").unwrap(),
            None
        );
    }
}
