//! The `admission.k8s.io` wire types: what the API server sends and what it expects back.
//!
//! These are our own types rather than a library's because the protocol has sharp edges that
//! must be owned here: the answer must echo the request's `apiVersion` (v1 or v1beta1) and
//! `uid`, and the patch must be base64 on the wire (some libraries emit a byte array).

mod decode;
mod json_text;
mod meter;
mod object;
mod one_pass;
mod response;
mod skip;

pub use decode::DecodeError;
pub use object::{ObjectError, TypedObject, Workload, WorkloadKind};
pub use response::{AdmissionResponse, Status, StatusDetails};

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::Endpoint;

/// The `admission.k8s.io` version a review was sent in; the answer must use the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewVersion {
    /// `admission.k8s.io/v1`
    V1,
    /// `admission.k8s.io/v1beta1`
    V1Beta1,
}

impl ReviewVersion {
    /// The `apiVersion` string of this version.
    pub fn api_version(self) -> &'static str {
        match self {
            ReviewVersion::V1 => "admission.k8s.io/v1",
            ReviewVersion::V1Beta1 => "admission.k8s.io/v1beta1",
        }
    }

    fn parse(api_version: &str) -> Option<Self> {
        match api_version {
            "admission.k8s.io/v1" => Some(ReviewVersion::V1),
            "admission.k8s.io/v1beta1" => Some(ReviewVersion::V1Beta1),
            _ => None,
        }
    }
}

/// A decoded `AdmissionReview` request: its version and its `request`.
#[derive(Debug)]
pub struct Review {
    /// The version the review was sent in.
    pub version: ReviewVersion,
    /// The admission request.
    pub request: AdmissionRequest,
    /// `object` and `oldObject` decoded as their kind along with the review, when
    /// [`Review::from_slice`] could (see [`Review::decoded_objects`]).
    pub(crate) decoded: Option<DecodedObjects>,
    /// What decoding built, as [`meter`] charges it: what the review holds in memory.
    pub(crate) decoded_bytes: usize,
}

/// What decoding one review may build in memory by default (see [`Review::from_slice_within`]).
///
/// Far above any real pod: the largest object the API server stores is about 1.5 MiB of JSON,
/// and real pods decode to a few times their JSON size; far below what would threaten a
/// webhook's memory (decoding is charged at twice the size of what it builds, see [`meter`]).
pub const DEFAULT_MAX_DECODED_BYTES: usize = 16 * 1024 * 1024;

/// `object` and `oldObject` of a request, decoded as the kind the request claims.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DecodedObjects {
    /// `object`, when present and of a kind kadmit reads.
    pub object: Option<TypedObject>,
    /// `oldObject`, when present and of a kind kadmit reads.
    pub old_object: Option<TypedObject>,
    /// The one endpoint the objects were decoded for ([`Review::from_slice_for`]), without
    /// members only the other endpoint's policies read; `None` when decoded for both.
    pub(crate) only_for: Option<Endpoint>,
    /// Why an object could not be decoded (then `object` and `oldObject` are `None`): the
    /// review is answered with it, as the pipeline answers an object it cannot decode.
    pub(crate) error: Option<ObjectError>,
}

impl Review {
    /// Decodes an `AdmissionReview` JSON document as the API server sends it.
    ///
    /// Unknown fields are ignored (the API server adds fields over time); what kadmit needs to
    /// answer at all (`apiVersion`, `kind`, `request.uid`, `request.kind`, `request.operation`)
    /// must be present and well-formed, and the error says which one is not.
    ///
    /// A well-formed review from the API server is decoded in one pass, its objects straight
    /// into their types: then the objects kadmit reads are in [`Review::decoded_objects`] and
    /// not kept raw in `request.object` / `request.old_object`. Anything else is decoded the
    /// plain way, objects raw, so errors name the offending field.
    pub fn from_slice(body: &[u8]) -> Result<Self, DecodeError> {
        Self::from_slice_within(body, None, DEFAULT_MAX_DECODED_BYTES)
    }

    /// [`Review::from_slice`] for a review that will be evaluated at `endpoint` only, as the
    /// server evaluates each review it receives. On `/mutate` a pod's volumes, ports and probes
    /// are not decoded (only Pod Security reads them, and it runs at `/validate`), which makes
    /// decoding a typical pod a fifth cheaper. Evaluating the result at the other endpoint is a
    /// bug (debug builds assert it).
    pub fn from_slice_for(body: &[u8], endpoint: Endpoint) -> Result<Self, DecodeError> {
        Self::from_slice_within(body, Some(endpoint), DEFAULT_MAX_DECODED_BYTES)
    }

    /// [`Review::from_slice`] (for one `endpoint`, or both when `None`), building at most
    /// `max_decoded_bytes` in memory (as [`meter`] charges it; see
    /// [`Review::decoded_bytes`]).
    ///
    /// The envelope past the limit is a [`DecodeError::TooLarge`]. An `object` or `oldObject`
    /// past it gives a review whose evaluation denies it with code 400, naming the list that
    /// went past and the limit, whatever the policies are: it is a property of the object, not
    /// a failure to decide.
    ///
    /// The objects are always decoded here, so that what a review holds is known before it is
    /// evaluated (the server counts it in its memory budget).
    pub fn from_slice_within(
        body: &[u8],
        endpoint: Option<Endpoint>,
        max_decoded_bytes: usize,
    ) -> Result<Self, DecodeError> {
        let text = match std::str::from_utf8(body) {
            Ok(text) => text,
            Err(err) => return Err(DecodeError::not_utf8(body, err.valid_up_to())),
        };
        let meter = meter::Meter::new(max_decoded_bytes);
        if let Some(mut review) = one_pass::decode(text, endpoint, &meter) {
            review.decoded_bytes = meter.used();
            return Ok(review);
        }
        // The plain decoder: raw objects, then each decoded as its kind, within the same limit.
        let meter = meter::Meter::new(max_decoded_bytes);
        let mut review = decode::decode_review(body, &meter)?;
        let request = &review.request;
        let skip = skip::pod_for(endpoint);
        let decode = |raw: &Option<Box<RawValue>>, field| match raw {
            Some(raw) => TypedObject::decode_metered(&request.kind, raw, field, skip, &meter),
            None => Ok(None),
        };
        let decoded = match (
            decode(&request.object, "object"),
            decode(&request.old_object, "oldObject"),
        ) {
            (Ok(object), Ok(old_object)) => DecodedObjects {
                object,
                old_object,
                only_for: endpoint,
                error: None,
            },
            (Err(error), _) | (_, Err(error)) => DecodedObjects {
                only_for: endpoint,
                error: Some(error),
                ..DecodedObjects::default()
            },
        };
        review.decoded_bytes = meter.used();
        if decoded.error.as_ref().is_some_and(|e| e.too_large) {
            // Answered with the error alone: nothing of the objects needs to be kept.
            review.request.object = None;
            review.request.old_object = None;
            review.decoded_bytes = 0;
        }
        review.decoded = Some(decoded);
        Ok(review)
    }

    /// What decoding built, in bytes, as the decoding limit counts it: the memory the review
    /// holds while it is evaluated (its objects, and the raw ones the plain decoder keeps).
    pub fn decoded_bytes(&self) -> usize {
        self.decoded_bytes
    }

    /// The objects [`Review::from_slice`] decoded along with the review, if it did; otherwise
    /// they are raw in `request` and the pipeline decodes them.
    pub fn decoded_objects(&self) -> Option<&DecodedObjects> {
        self.decoded.as_ref()
    }
}

/// `operation` of an admission request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    /// The object is being created.
    Create,
    /// The object is being replaced or patched.
    Update,
    /// The object is being deleted.
    Delete,
    /// A connect subresource (exec, attach, port-forward, proxy).
    Connect,
}

impl Operation {
    /// The wire spelling, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// `group`, `version`, `kind` of the object under review.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct GroupVersionKind {
    /// API group; empty for the core group.
    #[serde(default)]
    pub group: String,
    /// API version within the group.
    #[serde(default)]
    pub version: String,
    /// Kind, such as `Pod`.
    #[serde(default)]
    pub kind: String,
}

impl GroupVersionKind {
    /// Whether this is the core-group `v1` kind `kind`.
    pub fn is_core_v1(&self, kind: &str) -> bool {
        self.group.is_empty() && self.version == "v1" && self.kind == kind
    }
}

/// `group`, `version`, `resource` of the object under review.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct GroupVersionResource {
    /// API group; empty for the core group.
    #[serde(default)]
    pub group: String,
    /// API version within the group.
    #[serde(default)]
    pub version: String,
    /// Resource, such as `pods`.
    #[serde(default)]
    pub resource: String,
}

/// Who sent the request to the API server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct UserInfo {
    /// The user's name, such as `system:serviceaccount:ns:sa`.
    #[serde(default)]
    pub username: String,
    /// The user's uid.
    #[serde(default)]
    pub uid: String,
    /// The user's groups.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// The `request` of an `AdmissionReview`.
///
/// `object` and `oldObject` stay raw JSON here: they are decoded once, as the kind the request
/// claims, by [`TypedObject::decode`], so a policy never re-parses them and a malformed object
/// can be answered with a precise error instead of failing the whole review.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest {
    /// Identifies this request; echoed in the response.
    pub uid: String,
    /// The kind of `object`.
    pub kind: GroupVersionKind,
    /// The resource being accessed.
    #[serde(default)]
    pub resource: GroupVersionResource,
    /// The subresource being accessed, such as `ephemeralcontainers` or `status`.
    #[serde(default)]
    pub sub_resource: Option<String>,
    /// The name of the object; may be empty on CREATE with `generateName`.
    #[serde(default)]
    pub name: Option<String>,
    /// The namespace of the object; empty for cluster-scoped objects.
    #[serde(default)]
    pub namespace: Option<String>,
    /// What is being done.
    pub operation: Operation,
    /// Who is doing it.
    #[serde(default)]
    pub user_info: UserInfo,
    /// The new object (CREATE, UPDATE, CONNECT options), as sent; `None` when absent, and also
    /// when [`Review::from_slice`] decoded it as its kind instead ([`Review::decoded_objects`]).
    #[serde(default)]
    pub object: Option<Box<RawValue>>,
    /// The existing object (UPDATE, DELETE), as sent; `None` as for `object`.
    #[serde(default)]
    pub old_object: Option<Box<RawValue>>,
    /// Whether the request is a dry run: policies must not cause side effects.
    #[serde(default)]
    pub dry_run: Option<bool>,
}

impl AdmissionRequest {
    /// The namespace, or `""` for cluster-scoped requests.
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("")
    }

    /// The object's name, or `""` when the API server has not assigned one yet.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }
}
