//! Namespace labels → the Pod Security policy to evaluate, with upstream's rules: invalid
//! `enforce` fails closed (restricted), invalid `audit`/`warn` fail open (privileged), invalid
//! versions mean `latest`, and `warn` follows a stricter explicit `enforce`.

use std::collections::BTreeMap;
use std::fmt;

use super::go_quote::go_quote;
use crate::config::{Level, PodSecurityDefaults, PolicyVersion};

/// The label prefix.
pub const LABEL_PREFIX: &str = "pod-security.kubernetes.io/";

/// A level at a version, written `level:version` as upstream prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LevelVersion {
    /// The level.
    pub level: Level,
    /// The version as labelled (`latest`, or `v1.N` even when newer than kadmit knows).
    pub version: PolicyVersion,
}

impl fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.level.as_str(), self.version)
    }
}

/// What a namespace asks for in each mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamespacePolicy {
    /// Violations deny pods.
    pub enforce: LevelVersion,
    /// Violations are recorded in the audit annotations.
    pub audit: LevelVersion,
    /// Violations are returned as warnings.
    pub warn: LevelVersion,
}

impl NamespacePolicy {
    /// The configured defaults.
    pub fn from_defaults(defaults: &PodSecurityDefaults) -> NamespacePolicy {
        NamespacePolicy {
            enforce: LevelVersion {
                level: defaults.enforce,
                version: defaults.enforce_version,
            },
            audit: LevelVersion {
                level: defaults.audit,
                version: defaults.audit_version,
            },
            warn: LevelVersion {
                level: defaults.warn,
                version: defaults.warn_version,
            },
        }
    }

    /// Whether nothing is enforced, audited or warned about.
    pub fn fully_privileged(&self) -> bool {
        [self.enforce, self.audit, self.warn]
            .iter()
            .all(|m| m.level == Level::Privileged)
    }

    /// Upstream's `Equivalent`: same levels, and same versions where the level is not privileged.
    pub fn equivalent(&self, other: &NamespacePolicy) -> bool {
        let same = |a: LevelVersion, b: LevelVersion| {
            a.level == b.level && (a.level == Level::Privileged || a.version == b.version)
        };
        same(self.enforce, other.enforce)
            && same(self.audit, other.audit)
            && same(self.warn, other.warn)
    }
}

/// An invalid Pod Security label, worded as the API server words field errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelError {
    /// The full label key.
    pub label: String,
    /// Its value.
    pub value: String,
    /// Why it is invalid.
    pub reason: &'static str,
}

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "metadata.labels[{}]: Invalid value: {}: {}",
            self.label,
            go_quote(&self.value),
            self.reason
        )
    }
}

/// Several label errors as Go's aggregate error prints them: one alone, several as `[a, b]`.
pub fn aggregate(errors: &[LabelError]) -> String {
    match errors {
        [one] => one.to_string(),
        many => format!(
            "[{}]",
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

const LEVEL_REASON: &str = "must be one of privileged, baseline, restricted";
const VERSION_REASON: &str = "must be \"latest\" or \"v1.x\"";

// The labels, written out whole: they are looked up on every review, so not formatted each time.
pub(super) const ENFORCE: &str = "pod-security.kubernetes.io/enforce";
pub(super) const ENFORCE_VERSION: &str = "pod-security.kubernetes.io/enforce-version";
pub(super) const AUDIT: &str = "pod-security.kubernetes.io/audit";
pub(super) const AUDIT_VERSION: &str = "pod-security.kubernetes.io/audit-version";
pub(super) const WARN: &str = "pod-security.kubernetes.io/warn";
pub(super) const WARN_VERSION: &str = "pod-security.kubernetes.io/warn-version";

/// The policy for a namespace with `labels`, starting from `defaults`, and the errors of any
/// invalid label.
pub fn policy_from_labels(
    labels: Option<&BTreeMap<String, String>>,
    defaults: &PodSecurityDefaults,
) -> (NamespacePolicy, Vec<LabelError>) {
    let mut policy = NamespacePolicy::from_defaults(defaults);
    let mut errors = Vec::new();
    let Some(labels) = labels.filter(|l| !l.is_empty()) else {
        return (policy, errors);
    };
    // Some(None) for a label with an invalid level; None when the label is absent.
    let level = |label: &str, errors: &mut Vec<LabelError>| -> Option<Option<Level>> {
        let value = labels.get(label)?;
        let parsed = parse_level(value);
        if parsed.is_none() {
            errors.push(LabelError {
                label: label.to_owned(),
                value: value.clone(),
                reason: LEVEL_REASON,
            });
        }
        Some(parsed)
    };
    let version = |label: &str, errors: &mut Vec<LabelError>| -> Option<PolicyVersion> {
        let value = labels.get(label)?;
        Some(PolicyVersion::parse(value).unwrap_or_else(|| {
            errors.push(LabelError {
                label: label.to_owned(),
                value: value.clone(),
                reason: VERSION_REASON,
            });
            PolicyVersion::Latest
        }))
    };
    // enforce: an invalid level fails closed.
    let enforce_level = level(ENFORCE, &mut errors);
    let has_valid_enforce = matches!(enforce_level, Some(Some(_)));
    if let Some(l) = enforce_level {
        policy.enforce.level = l.unwrap_or(Level::Restricted);
    }
    if let Some(v) = version(ENFORCE_VERSION, &mut errors) {
        policy.enforce.version = v;
    }
    // audit and warn: an invalid level fails open.
    if let Some(l) = level(AUDIT, &mut errors) {
        policy.audit.level = l.unwrap_or(Level::Privileged);
    }
    if let Some(v) = version(AUDIT_VERSION, &mut errors) {
        policy.audit.version = v;
    }
    let warn_level = level(WARN, &mut errors);
    let has_warn_level = warn_level.is_some();
    if let Some(l) = warn_level {
        policy.warn.level = l.unwrap_or(Level::Privileged);
    }
    let warn_version = version(WARN_VERSION, &mut errors);
    let has_warn_version = warn_version.is_some();
    if let Some(v) = warn_version {
        policy.warn.version = v;
    }
    // Warn about what an explicit, stricter enforce level would deny.
    if !has_warn_level && has_valid_enforce && policy.enforce.level > policy.warn.level {
        policy.warn.level = policy.enforce.level;
        if !has_warn_version {
            policy.warn.version = policy.enforce.version;
        }
    }
    (policy, errors)
}

fn parse_level(value: &str) -> Option<Level> {
    match value {
        "privileged" => Some(Level::Privileged),
        "baseline" => Some(Level::Baseline),
        "restricted" => Some(Level::Restricted),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (format!("{LABEL_PREFIX}{k}"), (*v).to_owned()))
            .collect()
    }

    fn lv(level: Level, version: PolicyVersion) -> LevelVersion {
        LevelVersion { level, version }
    }

    #[test]
    fn labels_override_defaults() {
        let (p, errors) = policy_from_labels(
            Some(&labels(&[
                ("enforce", "baseline"),
                ("enforce-version", "v1.30"),
                ("audit", "restricted"),
            ])),
            &PodSecurityDefaults::default(),
        );
        assert!(errors.is_empty());
        assert_eq!(p.enforce, lv(Level::Baseline, PolicyVersion::Minor(30)));
        assert_eq!(p.audit, lv(Level::Restricted, PolicyVersion::Latest));
        // warn follows the stricter explicit enforce, with its version.
        assert_eq!(p.warn, lv(Level::Baseline, PolicyVersion::Minor(30)));
        assert_eq!(p.enforce.to_string(), "baseline:v1.30");
    }

    #[test]
    fn warn_defaulting_only_without_warn_label_and_for_valid_stricter_enforce() {
        let d = PodSecurityDefaults::default();
        let (p, _) = policy_from_labels(
            Some(&labels(&[("enforce", "restricted"), ("warn", "baseline")])),
            &d,
        );
        assert_eq!(p.warn.level, Level::Baseline);
        let (p, _) = policy_from_labels(
            Some(&labels(&[
                ("enforce", "restricted"),
                ("warn-version", "v1.20"),
            ])),
            &d,
        );
        assert_eq!(p.warn, lv(Level::Restricted, PolicyVersion::Minor(20)));
        let (p, _) = policy_from_labels(Some(&labels(&[("enforce", "bogus")])), &d);
        assert_eq!(p.enforce.level, Level::Restricted);
        assert_eq!(
            p.warn.level,
            Level::Privileged,
            "no warn defaulting from an invalid enforce label"
        );
        let defaults = PodSecurityDefaults {
            warn: Level::Restricted,
            ..Default::default()
        };
        let (p, _) = policy_from_labels(Some(&labels(&[("enforce", "baseline")])), &defaults);
        assert_eq!(p.warn.level, Level::Restricted, "never loosened");
    }

    #[test]
    fn invalid_labels_fail_closed_for_enforce_and_open_for_the_rest() {
        let (p, errors) = policy_from_labels(
            Some(&labels(&[
                ("enforce", "foo"),
                ("audit", "bar"),
                ("warn", "baz"),
                ("warn-version", "v2"),
            ])),
            &PodSecurityDefaults::default(),
        );
        assert_eq!(p.enforce.level, Level::Restricted);
        assert_eq!(p.audit.level, Level::Privileged);
        assert_eq!(p.warn, lv(Level::Privileged, PolicyVersion::Latest));
        assert_eq!(
            errors[0].to_string(),
            r#"metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "foo": must be one of privileged, baseline, restricted"#
        );
        assert_eq!(
            errors[3].to_string(),
            r#"metadata.labels[pod-security.kubernetes.io/warn-version]: Invalid value: "v2": must be "latest" or "v1.x""#
        );
        assert!(
            aggregate(&errors).starts_with("[metadata.labels[pod-security.kubernetes.io/enforce]")
        );
        assert_eq!(aggregate(&errors[..1]), errors[0].to_string());
    }
}
