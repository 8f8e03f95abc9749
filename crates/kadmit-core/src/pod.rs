//! The parts of a Pod that kadmit's policies read and change.
//!
//! `k8s_openapi`'s `Pod` models every member of the API. Decoding a review into it was most of
//! what a request cost: a `Container` is over a kilobyte of mostly empty options, moved several
//! times on its way into its list, and every string it holds is allocated. These types keep the
//! members policies use, under the same names and with the same types as `k8s_openapi`'s (save
//! probes and `lifecycle`, boxed: large and rarely present), so policy code reads much the same
//! either way; what they hold below that (security contexts, resources, probes) are
//! `k8s_openapi`'s own types, whole, because defaulting replaces some of them whole and the
//! patch must not drop what the client sent. Volumes are the exception: policies only ask which
//! sources a volume sets, and `k8s_openapi`'s `Volume` is kilobytes of empty options (see
//! [`Volume`]). Members not listed are
//! passed over while decoding, exactly as if the client had not sent them, and a patch never
//! touches them (see `policy::mutation`).
//!
//! One difference from `k8s_openapi` is deliberate: a member sent twice in one object (two
//! `containers`, two `image`s in a container) is refused, where `k8s_openapi` keeps the last.
//! The API server never sends one; a hand-made review that does gets a 400 naming the member,
//! rather than a decision on whichever copy a decoder happened to keep.
//!
//! Pods from the cluster view (`k8s_openapi` types, as the watch delivers them) convert with
//! `From`.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1 as api;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};

pub use api::{
    ContainerPort, Lifecycle, LocalObjectReference, PodOS, PodSecurityContext, Probe,
    ResourceRequirements, SecurityContext,
};

/// A pod: its metadata and spec (the status is not read).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pod {
    /// The pod's metadata.
    pub metadata: ObjectMeta,
    /// The pod's spec, if sent.
    pub spec: Option<PodSpec>,
}

/// The metadata policies read: the name, namespace, labels and annotations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// `metadata.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `metadata.namespace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `metadata.labels`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// `metadata.annotations`: defaulting records what it did here, and older Pod Security
    /// versions read AppArmor and seccomp settings from them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// The spec members policies read or change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    /// `spec.containers`.
    #[serde(default, deserialize_with = "required_list")]
    pub containers: Vec<Container>,
    /// `spec.ephemeralContainers` (the same members as a container, as far as policies go).
    #[serde(
        default,
        deserialize_with = "list",
        skip_serializing_if = "Option::is_none"
    )]
    pub ephemeral_containers: Option<Vec<EphemeralContainer>>,
    /// `spec.hostIPC`.
    #[serde(default, rename = "hostIPC", skip_serializing_if = "Option::is_none")]
    pub host_ipc: Option<bool>,
    /// `spec.hostNetwork`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_network: Option<bool>,
    /// `spec.hostPID`.
    #[serde(default, rename = "hostPID", skip_serializing_if = "Option::is_none")]
    pub host_pid: Option<bool>,
    /// `spec.hostUsers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_users: Option<bool>,
    /// `spec.hostname`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// `spec.imagePullSecrets`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// `spec.initContainers`.
    #[serde(
        default,
        deserialize_with = "list",
        skip_serializing_if = "Option::is_none"
    )]
    pub init_containers: Option<Vec<Container>>,
    /// `spec.os`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<PodOS>,
    /// `spec.runtimeClassName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_class_name: Option<String>,
    /// `spec.securityContext`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
    /// `spec.serviceAccountName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// `spec.volumes`: which sources each sets (see [`Volume`]).
    #[serde(
        default,
        deserialize_with = "list",
        skip_serializing_if = "Option::is_none"
    )]
    pub volumes: Option<Vec<Volume>>,
}

/// The members of a container (of any of the three lists) policies read or change.
///
/// Probes and lifecycle handlers are boxed: most containers on `/mutate` have none decoded
/// (see `review::skip`), and inline they made a container over a kilobyte to move around.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// `image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// `lifecycle`: Pod Security reads the hosts of its handlers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Box<Lifecycle>>,
    /// `livenessProbe`: Pod Security reads the host of its handler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Box<Probe>>,
    /// `name`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// `ports`: Pod Security reads the host ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<ContainerPort>>,
    /// `readinessProbe`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Box<Probe>>,
    /// `resources`: what default-resources fills in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// `securityContext`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
    /// `startupProbe`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Box<Probe>>,
}

/// An ephemeral container: to policies, the same members as a container.
pub type EphemeralContainer = Container;

/// A pod template (of a workload): metadata and spec, as a pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodTemplateSpec {
    /// The template's metadata.
    pub metadata: Option<ObjectMeta>,
    /// The template's pod spec.
    pub spec: Option<PodSpec>,
}

/// Present: a volume source that is set (to an object; what it holds is not read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Source;

/// Decoded from an object only, whose members are passed over: the API server has already
/// validated them, and no policy reads inside a volume source.
impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Source, D::Error> {
        struct SourceVisitor;

        impl<'de> Visitor<'de> for SourceVisitor {
            type Value = Source;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Source, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Source)
            }
        }

        de.deserialize_map(SourceVisitor)
    }
}

/// Written as an empty object: the contents were not kept.
impl Serialize for Source {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_struct("Source", 0)?.end()
    }
}

/// Defines [`Volume`]: its name and, for each volume source, whether it is set.
macro_rules! volume {
    ($($field:ident: $json:literal,)*) => {
        /// A volume as policies read it: its name and which sources it sets.
        ///
        /// `k8s_openapi`'s `Volume` holds every source inline, several kilobytes per volume
        /// whatever it sets, so a pod of 50 000 `{"name": "v", "emptyDir": {}}` volumes (1.6 MB
        /// on the wire) took 400 MiB to decode. Pod Security only asks which sources a volume
        /// sets, so that is all this keeps: a volume is its name and a byte per source.
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct Volume {
            /// `name`.
            #[serde(default, deserialize_with = "null_as_default")]
            pub name: String,
            $(
                #[doc = concat!("`", $json, "`, when set.")]
                #[serde(default, rename = $json, skip_serializing_if = "Option::is_none")]
                pub $field: Option<Source>,
            )*
        }

        impl Volume {
            /// Whether no source is set (the API server defaults such a volume to `emptyDir`).
            pub fn has_no_source(&self) -> bool {
                true $(&& self.$field.is_none())*
            }
        }

        impl From<&api::Volume> for Volume {
            fn from(volume: &api::Volume) -> Volume {
                Volume {
                    name: volume.name.clone(),
                    $($field: volume.$field.as_ref().map(|_| Source),)*
                }
            }
        }
    };
}

volume! {
    aws_elastic_block_store: "awsElasticBlockStore",
    azure_disk: "azureDisk",
    azure_file: "azureFile",
    cephfs: "cephfs",
    cinder: "cinder",
    config_map: "configMap",
    csi: "csi",
    downward_api: "downwardAPI",
    empty_dir: "emptyDir",
    ephemeral: "ephemeral",
    fc: "fc",
    flex_volume: "flexVolume",
    flocker: "flocker",
    gce_persistent_disk: "gcePersistentDisk",
    git_repo: "gitRepo",
    glusterfs: "glusterfs",
    host_path: "hostPath",
    image: "image",
    iscsi: "iscsi",
    nfs: "nfs",
    persistent_volume_claim: "persistentVolumeClaim",
    photon_persistent_disk: "photonPersistentDisk",
    portworx_volume: "portworxVolume",
    projected: "projected",
    quobyte: "quobyte",
    rbd: "rbd",
    scale_io: "scaleIO",
    secret: "secret",
    storageos: "storageos",
    vsphere_volume: "vsphereVolume",
}

/// `null` as the type's default, as `k8s_openapi` decodes required members (and a missing one).
fn null_as_default<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(de)?.unwrap_or_default())
}

/// A struct decoded from a JSON object only.
///
/// Derived decoding also accepts a struct written as an array, members by position; the API
/// server and `k8s_openapi` accept only objects, so a container sent as an array must be refused
/// here too, not read position by position.
struct MapOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MapOnly<T> {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<MapOnly<T>, D::Error> {
        struct MapVisitor<T>(std::marker::PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for MapVisitor<T> {
            type Value = MapOnly<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MapOnly<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(MapOnly)
            }
        }

        // As a struct (serde_json reads both the same way): its members are part of it, which
        // is how `review::meter` tells them from a map's entries.
        de.deserialize_struct("", &[], MapVisitor(std::marker::PhantomData))
    }
}

/// An optional list of objects (see [`MapOnly`]), each decoded straight into its place.
fn list<'de, D, T>(de: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct ListVisitor<T>(std::marker::PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for ListVisitor<T> {
        type Value = Option<Vec<T>>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a sequence")
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
            de.deserialize_seq(self)
        }

        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut list = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
            while let Some(MapOnly(item)) = seq.next_element()? {
                list.push(item);
            }
            Ok(Some(list))
        }
    }

    de.deserialize_option(ListVisitor(std::marker::PhantomData))
}

/// A required list of objects: missing or `null` is empty (see [`null_as_default`]).
fn required_list<'de, D, T>(de: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(list(de)?.unwrap_or_default())
}

impl Pod {
    const API_VERSION: &'static str = "v1";
    const KIND: &'static str = "Pod";
}

/// Written as `k8s_openapi` writes a pod: `apiVersion` and `kind` first, no `status`.
impl Serialize for Pod {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut state = serializer.serialize_struct("Pod", 3 + usize::from(self.spec.is_some()))?;
        state.serialize_field("apiVersion", Pod::API_VERSION)?;
        state.serialize_field("kind", Pod::KIND)?;
        state.serialize_field("metadata", &self.metadata)?;
        if let Some(spec) = &self.spec {
            state.serialize_field("spec", spec)?;
        }
        state.end()
    }
}

/// Read as `k8s_openapi` reads a pod: `apiVersion` and `kind`, when present, must be `v1` and
/// `Pod`; a missing or `null` `metadata` is empty.
impl<'de> Deserialize<'de> for Pod {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Pod, D::Error> {
        struct PodVisitor;

        impl<'de> Visitor<'de> for PodVisitor {
            type Value = Pod;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Pod")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pod, A::Error> {
                let mut pod = Pod::default();
                while let Some(key) = map.next_key::<PodKey>()? {
                    match key {
                        PodKey::ApiVersion => map.next_value_seed(Exactly(Pod::API_VERSION))?,
                        PodKey::Kind => map.next_value_seed(Exactly(Pod::KIND))?,
                        PodKey::Metadata => {
                            let metadata: Option<MapOnly<ObjectMeta>> = map.next_value()?;
                            pod.metadata = metadata.map(|m| m.0).unwrap_or_default();
                        }
                        PodKey::Spec => {
                            let spec: Option<MapOnly<PodSpec>> = map.next_value()?;
                            pod.spec = spec.map(|s| s.0);
                        }
                        PodKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(pod)
            }
        }

        /// Top-level keys, matched without allocating (a `String` or `Cow` key would be
        /// allocated for every member of every review).
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "camelCase")]
        enum PodKey {
            ApiVersion,
            Kind,
            Metadata,
            Spec,
            #[serde(other)]
            Other,
        }

        /// A string value that must be exactly this one, compared where it lies in the input.
        struct Exactly(&'static str);

        impl<'de> de::DeserializeSeed<'de> for Exactly {
            type Value = ();

            fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
                de.deserialize_str(self)
            }
        }

        impl Visitor<'_> for Exactly {
            type Value = ();

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.0)
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<(), E> {
                if value == self.0 {
                    Ok(())
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(value), &self))
                }
            }
        }

        de.deserialize_struct(
            "Pod",
            &["apiVersion", "kind", "metadata", "spec"],
            PodVisitor,
        )
    }
}

impl From<&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta> for ObjectMeta {
    fn from(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> ObjectMeta {
        ObjectMeta {
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            labels: meta.labels.clone(),
            annotations: meta.annotations.clone(),
        }
    }
}

impl From<&api::Container> for Container {
    fn from(c: &api::Container) -> Container {
        Container {
            image: c.image.clone(),
            lifecycle: c.lifecycle.clone().map(Box::new),
            liveness_probe: c.liveness_probe.clone().map(Box::new),
            name: c.name.clone(),
            ports: c.ports.clone(),
            readiness_probe: c.readiness_probe.clone().map(Box::new),
            resources: c.resources.clone(),
            security_context: c.security_context.clone(),
            startup_probe: c.startup_probe.clone().map(Box::new),
        }
    }
}

impl From<&api::EphemeralContainer> for Container {
    fn from(c: &api::EphemeralContainer) -> Container {
        Container {
            image: c.image.clone(),
            lifecycle: c.lifecycle.clone().map(Box::new),
            liveness_probe: c.liveness_probe.clone().map(Box::new),
            name: c.name.clone(),
            ports: c.ports.clone(),
            readiness_probe: c.readiness_probe.clone().map(Box::new),
            resources: c.resources.clone(),
            security_context: c.security_context.clone(),
            startup_probe: c.startup_probe.clone().map(Box::new),
        }
    }
}

impl From<&api::PodSpec> for PodSpec {
    fn from(spec: &api::PodSpec) -> PodSpec {
        PodSpec {
            containers: spec.containers.iter().map(Container::from).collect(),
            ephemeral_containers: spec
                .ephemeral_containers
                .as_ref()
                .map(|list| list.iter().map(Container::from).collect()),
            host_ipc: spec.host_ipc,
            host_network: spec.host_network,
            host_pid: spec.host_pid,
            host_users: spec.host_users,
            hostname: spec.hostname.clone(),
            image_pull_secrets: spec.image_pull_secrets.clone(),
            init_containers: spec
                .init_containers
                .as_ref()
                .map(|list| list.iter().map(Container::from).collect()),
            os: spec.os.clone(),
            runtime_class_name: spec.runtime_class_name.clone(),
            security_context: spec.security_context.clone(),
            service_account_name: spec.service_account_name.clone(),
            volumes: spec
                .volumes
                .as_ref()
                .map(|list| list.iter().map(Volume::from).collect()),
        }
    }
}

impl From<&api::Pod> for Pod {
    fn from(pod: &api::Pod) -> Pod {
        Pod {
            metadata: ObjectMeta::from(&pod.metadata),
            spec: pod.spec.as_ref().map(PodSpec::from),
        }
    }
}

impl From<&api::PodTemplateSpec> for PodTemplateSpec {
    fn from(template: &api::PodTemplateSpec) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: template.metadata.as_ref().map(ObjectMeta::from),
            spec: template.spec.as_ref().map(PodSpec::from),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::{Value, json};

    use super::*;
    use crate::manifest::read_manifest;

    /// The pod in `value` decoded both ways: into these types, and into `k8s_openapi`'s then
    /// converted. Equal for every pod means the names and types here are the API's.
    fn both_ways(value: &Value) -> (Result<Pod, String>, Result<Pod, String>) {
        let lean = serde_json::from_value::<Pod>(value.clone()).map_err(|e| e.to_string());
        let whole = serde_json::from_value::<api::Pod>(value.clone())
            .map(|pod| Pod::from(&pod))
            .map_err(|e| e.to_string());
        (lean, whole)
    }

    #[test]
    fn every_fixture_and_review_pod_decodes_as_k8s_openapi_decodes_it() {
        let Some(shared) = crate::test_support::shared("lean pod vs k8s_openapi") else {
            return;
        };
        let mut pods = Vec::new();
        let psa = shared.join("conformance/psa");
        let index = std::fs::read_to_string(psa.join("index.tsv")).unwrap();
        for line in index.lines().skip(1) {
            let file = line.split('\t').nth(3).unwrap();
            let text = std::fs::read_to_string(psa.join("testdata").join(file)).unwrap();
            for object in read_manifest(&text) {
                let value = object.unwrap().value;
                if value["kind"] == "Pod" {
                    pods.push((file.to_owned(), value));
                }
            }
        }
        let fixtures = pods.len();
        let reviews = shared.join("conformance/reviews");
        let index = std::fs::read_to_string(reviews.join("INDEX.tsv")).unwrap();
        for line in index.lines().skip(1) {
            let path = line.split('\t').next().unwrap();
            let Ok(review) =
                serde_json::from_slice::<Value>(&std::fs::read(reviews.join(path)).unwrap())
            else {
                continue;
            };
            if review["request"]["kind"]["kind"] != "Pod" {
                continue;
            }
            for field in ["object", "oldObject"] {
                let object = &review["request"][field];
                if object.is_object() {
                    pods.push((format!("{path} {field}"), object.clone()));
                }
            }
        }
        let mut unread_type_errors = 0;
        for (source, value) in &mut pods {
            let (mut lean, mut whole) = both_ways(value);
            // The one difference allowed: a member the model leaves out, with the wrong type,
            // which `k8s_openapi` refuses and these types never read (published reviews have
            // malformed timestamps in metadata and status).
            if lean.is_ok() && whole.is_err() {
                println!("{source}: {}, not read", whole.as_ref().unwrap_err());
                let object = value.as_object_mut().unwrap();
                object.remove("status");
                let metadata = object.get_mut("metadata").unwrap().as_object_mut().unwrap();
                metadata.retain(|k, _| {
                    ["name", "namespace", "labels", "annotations"].contains(&k.as_str())
                });
                (lean, whole) = both_ways(value);
                unread_type_errors += 1;
            }
            assert_eq!(
                lean.is_ok(),
                whole.is_ok(),
                "{source}: {lean:?} / {whole:?}"
            );
            if let (Ok(lean), Ok(whole)) = (lean, whole) {
                assert_eq!(lean, whole, "{source}");
                // And written out, it reads back the same.
                let again: Pod =
                    serde_json::from_value(serde_json::to_value(&lean).unwrap()).unwrap();
                assert_eq!(again, lean, "{source}");
            }
        }
        println!(
            "{fixtures} fixture pods and {} review pods decoded both ways",
            pods.len() - fixtures
        );
        assert!(
            fixtures >= 4537 && pods.len() - fixtures >= 45 && unread_type_errors <= 2,
            "{fixtures} {} {unread_type_errors}",
            pods.len()
        );
    }

    #[test]
    fn a_container_or_spec_written_as_an_array_is_refused() {
        for pod in [
            json!({"spec": {"containers": [["nginx"]]}}),
            json!({"spec": {"initContainers": [["nginx"]]}}),
            json!({"spec": {"ephemeralContainers": [["nginx"]]}}),
            json!({"spec": [[{"name": "c"}]]}),
            json!({"metadata": ["p"]}),
        ] {
            let (lean, whole) = both_ways(&pod);
            let err = lean.expect_err(&pod.to_string());
            assert!(err.contains("invalid type: sequence"), "{pod}: {err}");
            assert!(whole.is_err(), "{pod}");
        }
    }

    #[test]
    fn a_member_sent_twice_is_refused() {
        for text in [
            r#"{"spec": {"containers": [{"name": "a"}], "containers": [{"name": "b"}]}}"#,
            r#"{"spec": {"containers": [{"name": "a", "image": "x", "image": "y"}]}}"#,
            r#"{"metadata": {"labels": {}, "labels": {"a": "b"}}}"#,
        ] {
            let err = serde_json::from_str::<Pod>(text).unwrap_err().to_string();
            assert!(err.starts_with("duplicate field"), "{text}: {err}");
        }
    }

    #[test]
    fn api_version_and_kind_are_checked_and_nulls_are_empty() {
        for (pod, error) in [
            (
                json!({"apiVersion": "v2", "kind": "Pod"}),
                "invalid value: string \"v2\", expected v1",
            ),
            (
                json!({"kind": "Service"}),
                "invalid value: string \"Service\", expected Pod",
            ),
            (
                json!({"kind": 5}),
                "invalid type: integer `5`, expected Pod",
            ),
        ] {
            let (lean, whole) = both_ways(&pod);
            assert_eq!(lean.unwrap_err(), error, "{pod}");
            assert!(whole.is_err(), "{pod}");
        }
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": null,
            "spec": {"containers": null, "initContainers": [{"name": null, "image": "i"}]}});
        let (lean, whole) = both_ways(&pod);
        let lean = lean.unwrap();
        assert_eq!(lean, whole.unwrap());
        assert_eq!(lean.metadata, ObjectMeta::default());
        let spec = lean.spec.unwrap();
        assert!(spec.containers.is_empty());
        assert_eq!(spec.init_containers.unwrap()[0].name, "");
    }

    #[test]
    fn written_as_k8s_openapi_writes_the_same_members() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "n", "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "i",
                "securityContext": {"runAsUser": 0}, "resources": {"limits": {"cpu": "1"}}}],
                "hostIPC": true, "hostPID": false, "os": {"name": "linux"}}});
        let lean: Pod = serde_json::from_value(pod.clone()).unwrap();
        let whole: api::Pod = serde_json::from_value(pod.clone()).unwrap();
        assert_eq!(serde_json::to_value(&lean).unwrap(), pod);
        assert_eq!(serde_json::to_value(&whole).unwrap(), pod);
    }
}
