//! Decoding `object` / `oldObject` as the kind the request claims.

use k8s_openapi::api::core::v1::{Namespace, Pod};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::GroupVersionKind;
use super::decode::strip_position;

/// An object kadmit's policies read, decoded once per review and shared by every policy.
#[derive(Debug, Clone, PartialEq)]
pub enum TypedObject {
    /// A core/v1 Pod.
    Pod(Box<Pod>),
    /// A core/v1 Namespace.
    Namespace(Box<Namespace>),
}

/// `object` or `oldObject` does not decode as the kind the request says it is.
///
/// The API server never sends this; a client that does gets a denial with code 400 whose
/// message names the field inside the object, rather than a policy silently skipping it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{field} does not decode as a {kind}: {path}{message}")]
pub struct ObjectError {
    /// `object` or `oldObject`.
    pub field: &'static str,
    /// The claimed kind, such as `v1 Pod`.
    pub kind: &'static str,
    /// Where inside the object, followed by `: `; empty when the object itself is wrong.
    pub path: String,
    /// What is wrong there.
    pub message: String,
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
        if gvk.is_core_v1("Pod") {
            decode_as::<Pod>(raw, field, "v1 Pod").map(|p| Some(TypedObject::Pod(Box::new(p))))
        } else if gvk.is_core_v1("Namespace") {
            decode_as::<Namespace>(raw, field, "v1 Namespace")
                .map(|n| Some(TypedObject::Namespace(Box::new(n))))
        } else {
            Ok(None)
        }
    }

    /// The pod, if this is one.
    pub fn as_pod(&self) -> Option<&Pod> {
        match self {
            TypedObject::Pod(pod) => Some(pod),
            TypedObject::Namespace(_) => None,
        }
    }

    /// The namespace, if this is one.
    pub fn as_namespace(&self) -> Option<&Namespace> {
        match self {
            TypedObject::Namespace(ns) => Some(ns),
            TypedObject::Pod(_) => None,
        }
    }
}

fn decode_as<T: DeserializeOwned>(
    raw: &RawValue,
    field: &'static str,
    kind: &'static str,
) -> Result<T, ObjectError> {
    let mut de = serde_json::Deserializer::from_str(raw.get());
    serde_path_to_error::deserialize(&mut de).map_err(|err| {
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
            message: strip_position(err.inner()),
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
            "object does not decode as a v1 Pod: spec.containers[0].ports: invalid type: string \"80\", expected a sequence"
        );
        let err = TypedObject::decode(&pod_gvk(), &raw(r#""None""#), "oldObject").unwrap_err();
        assert!(
            err.to_string().starts_with(
                "oldObject does not decode as a v1 Pod: invalid type: string \"None\""
            ),
            "{err}"
        );
    }

    #[test]
    fn other_kinds_are_not_decoded() {
        let gvk = GroupVersionKind {
            group: "apps".into(),
            version: "v1".into(),
            kind: "Deployment".into(),
        };
        assert_eq!(
            TypedObject::decode(&gvk, &raw("\"anything\""), "object").unwrap(),
            None
        );
    }
}
