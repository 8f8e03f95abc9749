//! Decoding a review and its objects in one pass over the body.
//!
//! The plain decoder keeps `object` and `oldObject` as raw JSON and decodes them as their kind
//! afterwards, which reads every byte of them twice: for the bench pod, scanning the raw object
//! costs two thirds of what decoding it as a Pod costs. The API server writes `kind` before
//! `object` (Go marshals struct fields in order), so by the time the object arrives its kind is
//! known and it can be decoded straight into its type.
//!
//! This is only a fast path. Anything unusual — `object` before `kind`, a missing or duplicate
//! field, a malformed object, an envelope the plain decoder would refuse — makes it give up, and
//! the caller decodes the body the plain way, which gives the same answer for good input and the
//! precise errors for bad input.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::meter::{Meter, Metered};
use super::object::{TypedObject, Workload, WorkloadKind};
use super::skip::{self, Skipping};
use super::{
    AdmissionRequest, DecodedObjects, GroupVersionKind, GroupVersionResource, Operation, Review,
    ReviewVersion, UserInfo,
};
use crate::Endpoint;

/// The review in `body`, with its objects decoded as their kind; `None` when the plain decoder
/// must decide (see the module documentation).
///
/// Takes the body as text, checked as UTF-8 once by the caller: read from a `&[u8]`, serde_json
/// checks every string again as it decodes it, which for a pod was a fifth of the decoding.
///
/// `endpoint`, when given, is the only endpoint the review will be evaluated at: members only
/// the other endpoint's policies read are skipped too (see [`skip::pod_for`]).
///
/// What it builds is charged to `meter`; past its limit it gives up too (the plain decoder then
/// finds where, within the same limit).
pub(super) fn decode(body: &str, endpoint: Option<Endpoint>, meter: &Meter) -> Option<Review> {
    let mut de = serde_json::Deserializer::from_str(body);
    let review = Metered::new(&mut de, meter)
        .deserialize_map(EnvelopeVisitor(endpoint))
        .ok()?;
    de.end().ok()?;
    Some(review)
}

/// Gives up; the message is never shown (the plain decoder explains).
fn give_up<E: de::Error>() -> E {
    E::custom("not for the one-pass decoder")
}

struct EnvelopeVisitor(Option<Endpoint>);

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Review;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an AdmissionReview")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Review, A::Error> {
        let mut version = None;
        let mut kind_ok = false;
        let mut request = None;
        while let Some(key) = map.next_key::<&str>()? {
            match key {
                "apiVersion" if version.is_none() => {
                    let v: &str = map.next_value()?;
                    version = Some(ReviewVersion::parse(v).ok_or_else(give_up)?);
                }
                "kind" if !kind_ok => {
                    let k: &str = map.next_value()?;
                    if k != "AdmissionReview" {
                        return Err(give_up());
                    }
                    kind_ok = true;
                }
                "request" if request.is_none() => {
                    request = Some(map.next_value_seed(RequestSeed(self.0))?);
                }
                "apiVersion" | "kind" | "request" => return Err(give_up()),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        match (version, kind_ok, request) {
            (Some(version), true, Some((request, decoded))) if !request.uid.is_empty() => {
                Ok(Review {
                    version,
                    request,
                    decoded: Some(decoded),
                    decoded_bytes: 0,
                })
            }
            _ => Err(give_up()),
        }
    }
}

struct RequestSeed(Option<Endpoint>);

impl<'de> DeserializeSeed<'de> for RequestSeed {
    type Value = (AdmissionRequest, DecodedObjects);

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RequestSeed {
    type Value = (AdmissionRequest, DecodedObjects);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an AdmissionRequest")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut uid: Option<String> = None;
        let mut kind: Option<GroupVersionKind> = None;
        let mut resource: Option<GroupVersionResource> = None;
        let mut sub_resource: Option<Option<String>> = None;
        let mut name: Option<Option<String>> = None;
        let mut namespace: Option<Option<String>> = None;
        let mut operation: Option<Operation> = None;
        let mut user_info: Option<UserInfo> = None;
        let mut dry_run: Option<Option<bool>> = None;
        let mut object: Option<Decoded> = None;
        let mut old_object: Option<Decoded> = None;

        /// Sets a field once; a second occurrence gives up (serde's derive refuses it).
        fn once<T, E: de::Error>(slot: &mut Option<T>, value: T) -> Result<(), E> {
            match slot {
                Some(_) => Err(give_up()),
                None => {
                    *slot = Some(value);
                    Ok(())
                }
            }
        }

        while let Some(key) = map.next_key::<&str>()? {
            match key {
                "uid" => once(&mut uid, map.next_value()?)?,
                "kind" => once(&mut kind, map.next_value()?)?,
                "resource" => once(&mut resource, map.next_value()?)?,
                "subResource" => once(&mut sub_resource, map.next_value()?)?,
                "name" => once(&mut name, map.next_value()?)?,
                "namespace" => once(&mut namespace, map.next_value()?)?,
                "operation" => once(&mut operation, map.next_value()?)?,
                "userInfo" => once(&mut user_info, map.next_value()?)?,
                "dryRun" => once(&mut dry_run, map.next_value()?)?,
                "object" | "oldObject" => {
                    let gvk = kind.as_ref().ok_or_else(give_up)?;
                    let value = map.next_value_seed(ObjectSeed(gvk, self.0))?;
                    let slot = if key == "object" {
                        &mut object
                    } else {
                        &mut old_object
                    };
                    once(slot, value)?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let (Some(uid), Some(kind), Some(operation)) = (uid, kind, operation) else {
            return Err(give_up());
        };
        let (object, typed_object) = object.unwrap_or_default().split();
        let (old_object, typed_old_object) = old_object.unwrap_or_default().split();
        let request = AdmissionRequest {
            uid,
            kind,
            resource: resource.unwrap_or_default(),
            sub_resource: sub_resource.flatten(),
            name: name.flatten(),
            namespace: namespace.flatten(),
            operation,
            user_info: user_info.unwrap_or_default(),
            object,
            old_object,
            dry_run: dry_run.flatten(),
        };
        let decoded = DecodedObjects {
            object: typed_object,
            old_object: typed_old_object,
            only_for: self.0,
            error: None,
        };
        Ok((request, decoded))
    }
}

/// An `object` or `oldObject` as the one pass left it.
#[derive(Default)]
enum Decoded {
    /// Absent or `null`.
    #[default]
    Absent,
    /// A kind kadmit reads, decoded.
    Typed(TypedObject),
    /// A kind no policy reads, kept raw as the plain decoder keeps every object.
    Raw(Box<RawValue>),
}

impl Decoded {
    /// The raw JSON the request keeps, and the typed object.
    fn split(self) -> (Option<Box<RawValue>>, Option<TypedObject>) {
        match self {
            Decoded::Absent => (None, None),
            Decoded::Typed(typed) => (None, Some(typed)),
            Decoded::Raw(raw) => (Some(raw), None),
        }
    }
}

/// Decodes an object as the kind the request named, for one endpoint or (`None`) both.
struct ObjectSeed<'a>(&'a GroupVersionKind, Option<Endpoint>);

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_> {
    type Value = Decoded;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Decoded, D::Error> {
        let gvk = self.0;
        if gvk.is_core_v1("Pod") {
            let pod: Option<crate::pod::Pod> = match skip::pod_for(self.1) {
                Some(skip) => Option::deserialize(Skipping::new(de, skip))?,
                None => Option::deserialize(de)?,
            };
            match pod {
                // Absent or empty metadata: the pipeline needs the raw object to tell which.
                Some(pod) if pod.metadata == Default::default() => Err(give_up()),
                Some(pod) => Ok(Decoded::Typed(TypedObject::Pod(Box::new(pod)))),
                None => Ok(Decoded::Absent),
            }
        } else if gvk.is_core_v1("Namespace") {
            let namespace = Option::deserialize(de)?;
            Ok(namespace.map_or(Decoded::Absent, |ns| {
                Decoded::Typed(TypedObject::Namespace(Box::new(ns)))
            }))
        } else if let Some(kind) = WorkloadKind::from_gvk(gvk) {
            de.deserialize_option(WorkloadVisitor(kind))
        } else {
            let raw: Option<Box<RawValue>> = Option::deserialize(de)?;
            // `null` is kept as the plain decoder keeps it: absent.
            Ok(raw.map_or(Decoded::Absent, Decoded::Raw))
        }
    }
}

struct WorkloadVisitor(WorkloadKind);

impl<'de> Visitor<'de> for WorkloadVisitor {
    type Value = Decoded;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a workload or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Decoded, E> {
        Ok(Decoded::Absent)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Decoded, E> {
        Ok(Decoded::Absent)
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<Decoded, D::Error> {
        let workload = Workload::deserialize_as(self.0, de)?;
        Ok(Decoded::Typed(TypedObject::Workload(Box::new(workload))))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::cluster::Snapshot;
    use crate::review::decode::decode_review;
    use crate::{Config, Endpoint, Pipeline};

    fn pipeline() -> Pipeline {
        Pipeline::from_config(
            &Config::from_yaml(
                "podSecurity: {defaults: {enforce: restricted, warn: baseline}}\n\
                 gmsa: {enabled: true}\n\
                 defaultResources: {rules: [{namespaceSelector: {}, default: {cpu: 500m}}]}\n\
                 securityDefaults: {enabled: true}\n",
            )
            .unwrap(),
        )
    }

    /// Both endpoints' answers to `body`, decoded one way or the other.
    fn answers(pipeline: &Pipeline, review: &Review) -> String {
        let cluster = Snapshot::dev();
        [Endpoint::Validate, Endpoint::Mutate]
            .map(|e| format!("{:?}", pipeline.evaluate(e, review, &cluster)))
            .join("\n")
    }

    fn review(object_first: bool, object: &str) -> String {
        let kind = r#""kind": {"group": "", "version": "v1", "kind": "Pod"}"#;
        let object = format!(r#""object": {object}"#);
        let (a, b) = if object_first {
            (object.as_str(), kind)
        } else {
            (kind, object.as_str())
        };
        format!(
            r#"{{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {{
                "uid": "u", {a}, "namespace": "default", "operation": "CREATE", {b},
                "userInfo": {{"username": "me"}}, "options": {{"kind": "CreateOptions"}}}}}}"#
        )
    }

    fn unlimited() -> crate::review::meter::Meter {
        crate::review::meter::Meter::new(crate::review::DEFAULT_MAX_DECODED_BYTES)
    }

    #[test]
    fn decodes_objects_in_the_same_pass_and_answers_as_the_plain_decoder() {
        let pipeline = pipeline();
        let pod = r#"{"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx",
            "securityContext": {"privileged": true}}]}}"#;
        let body = review(false, pod);
        let fast = decode(&body, None, &unlimited()).expect("one pass");
        assert!(fast.request.object.is_none());
        assert!(matches!(
            fast.decoded_objects().unwrap().object,
            Some(TypedObject::Pod(_))
        ));
        let plain = decode_review(body.as_bytes(), &unlimited()).unwrap();
        assert!(plain.decoded.is_none() && plain.request.object.is_some());
        assert_eq!(answers(&pipeline, &fast), answers(&pipeline, &plain));
        assert!(answers(&pipeline, &fast).contains("privileged"));
    }

    #[test]
    fn gives_up_on_what_the_plain_decoder_must_explain() {
        let good = r#"{"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}"#;
        let bad = r#"{"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "ports": "80"}]}}"#;
        for body in [
            review(true, good), // object before kind
            review(false, bad), // a malformed object: answered 400 with its field
            review(false, good).replace(r#""uid": "u""#, r#""uid": """#),
            review(false, good).replace(r#""uid": "u""#, r#""uid": "u", "uid": "v""#),
            review(false, good).replace(r#""namespace""#, r#""n\u0061mespace""#),
            review(false, good).replace("AdmissionReview", "Other"),
            review(false, good).replace(r#""operation": "CREATE""#, ""),
            format!("{} x", review(false, good)),
        ] {
            assert!(decode(&body, None, &unlimited()).is_none(), "{body}");
        }
        let slow = Review::from_slice(review(false, bad).as_bytes()).unwrap();
        assert!(answers(&pipeline(), &slow).contains(
            "object does not decode as a v1 Pod: spec.containers[0].ports: invalid type"
        ));
        // A kind no policy reads stays raw, as the plain decoder keeps it.
        let body = review(false, r#"{"a": 1}"#).replace(r#""kind": "Pod""#, r#""kind": "Ingress""#);
        let fast = decode(&body, None, &unlimited()).unwrap();
        assert_eq!(fast.request.object.unwrap().get(), r#"{"a": 1}"#);
        assert_eq!(fast.decoded.unwrap(), DecodedObjects::default());
    }

    /// Every published review the plain decoder accepts gets the same answers either way.
    #[test]
    fn every_published_review_is_answered_as_by_the_plain_decoder() {
        let Some(dir) = crate::test_support::shared("one-pass comparison") else {
            return;
        };
        let pipeline = pipeline();
        let reviews = dir.join("conformance/reviews");
        let index = std::fs::read_to_string(reviews.join("INDEX.tsv")).unwrap();
        let (mut one_pass, mut plain_only) = (0, 0);
        for line in index.lines().skip(1) {
            let path = line.split('\t').next().unwrap();
            let body = std::fs::read(reviews.join(path)).unwrap();
            // What `Review::from_slice` hands the one-pass decoder: UTF-8 text, or nothing.
            let fast = std::str::from_utf8(&body)
                .ok()
                .and_then(|b| decode(b, None, &unlimited()));
            let Ok(plain) = decode_review(&body, &unlimited()) else {
                assert!(fast.is_none(), "{path}");
                continue;
            };
            match fast {
                Some(fast) => {
                    assert_eq!(fast.version, plain.version, "{path}");
                    assert_eq!(
                        answers(&pipeline, &fast),
                        answers(&pipeline, &plain),
                        "{path}"
                    );
                    one_pass += 1;
                }
                None => plain_only += 1,
            }
        }
        println!("{one_pass} reviews decoded in one pass, {plain_only} only the plain way");
        assert!(one_pass >= 50, "{one_pass}");
    }
}
