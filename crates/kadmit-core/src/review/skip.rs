//! Decoding an object without the members no policy reads.
//!
//! [`crate::pod`] models only what policies read of a pod, but below it are `k8s_openapi`'s own
//! types, whole (probes, lifecycle handlers, ports), and `/mutate` reads less than `/validate`.
//! [`Skipping`] wraps a deserializer and passes the members its lists name over (their JSON
//! syntax is still checked, their types are not), so the typed pod is built from the rest.
//! Members not listed are decoded as usual, and nothing is wrapped below them, so the cost of the
//! wrapper is paid only along the paths that lead to skipped members.
//!
//! The lists are of members, not of values: a skipped member is absent from the typed object,
//! exactly as if the client had not sent it. That is safe because policies never read them, and
//! patches are computed from the parts policies change, where nothing is skipped.

use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IgnoredAny, IntoDeserializer, MapAccess,
    SeqAccess, Visitor,
};

use crate::Endpoint;

/// The members to skip in an object, and in every object of an array at the same place.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Skip(pub(crate) &'static [(&'static str, Member)]);

/// What happens to one member.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Member {
    /// Passed over unread.
    Skip,
    /// Decoded, with these members of its own skipped.
    Into(Skip),
}

impl Skip {
    fn member(self, key: &str) -> Option<Member> {
        self.0
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, m)| *m)
    }
}

/// A container on `/mutate`: what only Pod Security reads (host ports, the hosts of probe and
/// lifecycle handlers), as Pod Security does not run there.
const MUTATE_CONTAINER: Skip = Skip(&[
    ("lifecycle", Member::Skip),
    ("livenessProbe", Member::Skip),
    ("ports", Member::Skip),
    ("readinessProbe", Member::Skip),
    ("startupProbe", Member::Skip),
]);

/// What no policy of `/mutate` reads of a Pod: volumes and the members of
/// [`MUTATE_CONTAINER`], which only Pod Security reads. Decoding the bench pod for `/mutate` this
/// way costs a fifth less.
pub(crate) const MUTATE_POD: Skip = Skip(&[(
    "spec",
    Member::Into(Skip(&[
        ("containers", Member::Into(MUTATE_CONTAINER)),
        ("ephemeralContainers", Member::Into(MUTATE_CONTAINER)),
        ("initContainers", Member::Into(MUTATE_CONTAINER)),
        ("volumes", Member::Skip),
    ])),
)]);

/// What is skipped in a Pod decoded for `endpoint` only: [`MUTATE_POD`] for `/mutate`, nothing
/// for `/validate` or for either (what [`crate::pod`] models is what some policy there reads);
/// nothing while a test compares decisions with and without skipping.
pub(crate) fn pod_for(endpoint: Option<Endpoint>) -> Option<Skip> {
    #[cfg(test)]
    if tests::SKIP_NOTHING.get() {
        return None;
    }
    match endpoint {
        Some(Endpoint::Mutate) => Some(MUTATE_POD),
        Some(Endpoint::Validate) | None => None,
    }
}

/// A deserializer that skips the members `skip` lists.
pub(crate) struct Skipping<D> {
    de: D,
    skip: Skip,
}

impl<D> Skipping<D> {
    pub(crate) fn new(de: D, skip: Skip) -> Self {
        Skipping { de, skip }
    }
}

macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
                self.de.$method($($arg,)* Wrap { visitor, skip: self.skip })
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Skipping<D> {
    type Error = D::Error;

    forward! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

/// The visitor the wrapped deserializer calls: maps and sequences are handed on wrapped,
/// everything else as it is.
struct Wrap<V> {
    visitor: V,
    skip: Skip,
}

macro_rules! pass {
    ($($method:ident($ty:ty);)*) => {
        $(
            fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
                self.visitor.$method(v)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }

    pass! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_unit()
    }

    fn visit_some<D2: Deserializer<'de>>(self, de: D2) -> Result<V::Value, D2::Error> {
        self.visitor.visit_some(Skipping::new(de, self.skip))
    }

    fn visit_newtype_struct<D2: Deserializer<'de>>(self, de: D2) -> Result<V::Value, D2::Error> {
        self.visitor
            .visit_newtype_struct(Skipping::new(de, self.skip))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_seq(Elements {
            seq,
            skip: self.skip,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_map(Members {
            map,
            skip: self.skip,
            next: None,
        })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_enum(data)
    }
}

/// Every element of an array is an object at the same place, with the same members skipped.
struct Elements<A> {
    seq: A,
    skip: Skip,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Elements<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.seq.next_element_seed(Seeded {
            seed,
            skip: self.skip,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.seq.size_hint()
    }
}

/// An object's members, less the skipped ones.
struct Members<A> {
    map: A,
    skip: Skip,
    /// What to skip inside the value of the key just returned, if anything.
    next: Option<Skip>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Members<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        loop {
            let Some(key) = self.map.next_key_seed(KeySeed)? else {
                return Ok(None);
            };
            self.next = None;
            match self.skip.member(key.as_str()) {
                Some(Member::Skip) => {
                    self.map.next_value::<IgnoredAny>()?;
                    continue;
                }
                Some(Member::Into(skip)) => self.next = Some(skip),
                None => {}
            }
            return match key {
                Key::Borrowed(k) => seed
                    .deserialize(de::value::BorrowedStrDeserializer::new(k))
                    .map(Some),
                Key::Owned(k) => seed.deserialize(k.into_deserializer()).map(Some),
            };
        }
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        match self.next.take() {
            Some(skip) => self.map.next_value_seed(Seeded { seed, skip }),
            None => self.map.next_value_seed(seed),
        }
    }
}

/// A seed whose value is decoded through [`Skipping`].
struct Seeded<T> {
    seed: T,
    skip: Skip,
}

impl<'de, T: DeserializeSeed<'de>> DeserializeSeed<'de> for Seeded<T> {
    type Value = T::Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<T::Value, D::Error> {
        self.seed.deserialize(Skipping::new(de, self.skip))
    }
}

/// An object key, borrowed from the input when it has no escapes.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(k) => k,
            Key::Owned(k) => k,
        }
    }
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key<'de>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Key<'de>, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
        Ok(Key::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
        Ok(Key::Owned(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
        Ok(Key::Owned(v))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::cell::Cell;

    use super::*;
    use crate::cluster::Snapshot;
    use crate::config::{Level, PolicyVersion};
    use crate::manifest::{check_pod_security, read_manifest};
    use crate::pod::Pod;
    use crate::{Config, Endpoint, Pipeline, Review};
    use serde::Deserialize;
    use serde_json::{Value, json};

    thread_local! {
        /// Set by [`without_skipping`]: decode pods whole.
        pub(super) static SKIP_NOTHING: Cell<bool> = const { Cell::new(false) };
    }

    fn without_skipping<T>(f: impl FnOnce() -> T) -> T {
        SKIP_NOTHING.set(true);
        let out = f();
        SKIP_NOTHING.set(false);
        out
    }

    /// Every policy on, with a cluster in which the defaulting policies all have work.
    fn pipeline_and_cluster() -> (Pipeline, Snapshot) {
        let config = Config::from_yaml(
            r#"
podSecurity:
  defaults: {enforce: restricted, audit: restricted, warn: baseline}
gmsa:
  enabled: true
defaultResources:
  limitRanges: true
  rules:
    - namespaceSelector: {}
      default: {cpu: 500m, memory: 256Mi}
imagePullSecrets:
  rules:
    - images: ["*"]
      secrets: [regcred]
securityDefaults:
  enabled: true
  dropAllCapabilities: true
mutationSummary: both
"#,
        )
        .unwrap();
        let cluster = Snapshot::parse(
            r#"
kind: LimitRange
apiVersion: v1
metadata: {name: limits, namespace: default}
spec:
  limits:
  - {type: Container, default: {ephemeral-storage: 1Gi}}
"#,
        )
        .unwrap();
        (Pipeline::from_config(&config), cluster)
    }

    /// The pipeline's answers, both endpoints, for `review`.
    fn decisions(pipeline: &Pipeline, cluster: &Snapshot, review: &Review) -> String {
        [Endpoint::Validate, Endpoint::Mutate]
            .map(|endpoint| format!("{:?}", pipeline.evaluate(endpoint, review, cluster)))
            .join("\n")
    }

    /// Whether `/mutate` answers `body` decoded for it alone ([`MUTATE_POD`]) as it answers the
    /// pod decoded whole; `None` when the one-pass decoder left it to the plain one (which does
    /// not skip per endpoint).
    fn mutate_only_agrees(pipeline: &Pipeline, cluster: &Snapshot, body: &[u8]) -> Option<bool> {
        let for_mutate = Review::from_slice_for(body, Endpoint::Mutate).ok()?;
        if for_mutate.decoded.as_ref()?.only_for != Some(Endpoint::Mutate) {
            return None;
        }
        let whole = without_skipping(|| Review::from_slice(body)).ok()?;
        let answer =
            |review: &Review| format!("{:?}", pipeline.evaluate(Endpoint::Mutate, review, cluster));
        let (skipping, whole) = (answer(&for_mutate), without_skipping(|| answer(&whole)));
        if skipping != whole {
            println!("/mutate decoded for itself:\n{skipping}\nwhole:\n{whole}");
        }
        Some(skipping == whole)
    }

    /// The decisions kadmit makes on every upstream Pod Security fixture (as `check` sees it, at
    /// its own level and version, and as a CREATE review through every policy) and on every
    /// published review are the same whether unread members are skipped or not: no policy reads
    /// what [`MUTATE_POD`] skips.
    #[test]
    fn skipping_changes_no_decision_on_any_fixture_or_review() {
        let Some(shared) = crate::test_support::shared("skipping-vs-whole comparison") else {
            return;
        };
        let (pipeline, cluster) = pipeline_and_cluster();
        let mut compared = 0;
        let mut mutate_only = 0;

        let psa = shared.join("conformance/psa");
        let index = std::fs::read_to_string(psa.join("index.tsv")).unwrap();
        for line in index.lines().skip(1) {
            let cols: Vec<&str> = line.split('\t').collect();
            let level = if cols[0] == "baseline" {
                Level::Baseline
            } else {
                Level::Restricted
            };
            let version = PolicyVersion::parse(cols[1]).unwrap();
            let text = std::fs::read_to_string(psa.join("testdata").join(cols[3])).unwrap();
            for object in read_manifest(&text) {
                let object = object.unwrap().value;
                let checked = |o: &Value| format!("{:?}", check_pod_security(o, level, version));
                let skipping = checked(&object);
                assert_eq!(
                    skipping,
                    without_skipping(|| checked(&object)),
                    "{}",
                    cols[3]
                );
                let kind = object["kind"].as_str().unwrap_or_default().to_owned();
                let (group, version) = match object["apiVersion"].as_str().unwrap_or("v1") {
                    v @ "v1" => ("", v.to_owned()),
                    other => other
                        .split_once('/')
                        .map_or(("", other.to_owned()), |(g, v)| {
                            (if g == "apps" { "apps" } else { "batch" }, v.to_owned())
                        }),
                };
                let review = json!({
                    "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                    "request": {"uid": "u", "kind": {"group": group, "version": version, "kind": kind},
                        "namespace": "default", "operation": "CREATE", "object": object}});
                let body = serde_json::to_vec(&review).unwrap();
                let review = Review::from_value(review).unwrap();
                let skipping = decisions(&pipeline, &cluster, &review);
                let whole = without_skipping(|| decisions(&pipeline, &cluster, &review));
                assert_eq!(skipping, whole, "{}", cols[3]);
                compared += 1;
                if let Some(agrees) = mutate_only_agrees(&pipeline, &cluster, &body) {
                    assert!(agrees, "{}", cols[3]);
                    mutate_only += 1;
                }
            }
        }

        let reviews = shared.join("conformance/reviews");
        let index = std::fs::read_to_string(reviews.join("INDEX.tsv")).unwrap();
        let mut from_reviews = 0;
        for line in index.lines().skip(1) {
            let path = line.split('\t').next().unwrap();
            let body = std::fs::read(reviews.join(path)).unwrap();
            let Ok(review) = Review::from_slice(&body) else {
                continue;
            };
            let skipping = decisions(&pipeline, &cluster, &review);
            let whole = without_skipping(|| decisions(&pipeline, &cluster, &review));
            assert_eq!(skipping, whole, "{path}");
            from_reviews += 1;
            if let Some(agrees) = mutate_only_agrees(&pipeline, &cluster, &body) {
                assert!(agrees, "{path}");
                mutate_only += 1;
            }
        }
        println!(
            "compared {compared} fixture objects and {from_reviews} reviews with and without \
             skipping ({mutate_only} also decoded for /mutate alone)"
        );
        assert!(
            compared >= 4537 && from_reviews >= 60 && mutate_only >= 4000,
            "{compared} {from_reviews} {mutate_only}"
        );
    }

    fn skipping(json: &str) -> Pod {
        let mut de = serde_json::Deserializer::from_str(json);
        Pod::deserialize(Skipping::new(&mut de, MUTATE_POD)).unwrap()
    }

    #[test]
    fn for_mutate_also_skips_what_only_pod_security_reads() {
        let json = r#"{"metadata": {"name": "p", "annotations": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}],
                "livenessProbe": {"httpGet": {"port": 80}}, "readinessProbe": {"tcpSocket": {"port": 80}},
                "startupProbe": {"exec": {"command": ["x"]}}, "lifecycle": {"preStop": {"sleep": {"seconds": 1}}},
                "securityContext": {"windowsOptions": {"gmsaCredentialSpecName": "g"}},
                "resources": {"limits": {"cpu": "1"}}}],
                "volumes": [{"name": "h", "hostPath": {"path": "/etc"}}],
                "securityContext": {"runAsNonRoot": true}, "imagePullSecrets": [{"name": "s"}],
                "os": {"name": "linux"}, "hostname": "h"}}"#;
        let mut de = serde_json::Deserializer::from_str(json);
        let pod = Pod::deserialize(Skipping::new(&mut de, MUTATE_POD)).unwrap();
        let mut expected: Pod = serde_json::from_str(json).unwrap();
        let spec = expected.spec.as_mut().unwrap();
        spec.volumes = None;
        let container = &mut spec.containers[0];
        container.ports = None;
        container.liveness_probe = None;
        container.readiness_probe = None;
        container.startup_probe = None;
        container.lifecycle = None;
        assert_eq!(pod, expected);
    }

    #[test]
    fn skipped_members_are_not_type_checked_but_the_rest_is() {
        let pod = skipping(r#"{"spec": {"containers": [{"name": "c", "ports": "not a list"}]}}"#);
        assert_eq!(pod.spec.unwrap().containers[0].name, "c");
        let mut de =
            serde_json::Deserializer::from_str(r#"{"spec": {"containers": [{"name": 1}]}}"#);
        assert!(Pod::deserialize(Skipping::new(&mut de, MUTATE_POD)).is_err());
        let mut de = serde_json::Deserializer::from_str(
            r#"{"spec": {"containers": [{"name": "c", "ports": [}]}]}}"#,
        );
        assert!(Pod::deserialize(Skipping::new(&mut de, MUTATE_POD)).is_err());
    }

    #[test]
    fn escaped_keys_are_matched_after_unescaping() {
        let pod = skipping(
            r#"{"spec": {"containers": [{"name": "c", "\u0070orts": [{"containerPort": 1}]}]}}"#,
        );
        assert_eq!(pod.spec.unwrap().containers[0].ports, None);
    }
}
