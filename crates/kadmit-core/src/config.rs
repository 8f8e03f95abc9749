//! The configuration file (`--config`), as typed data.
//!
//! Parsing is validation: every section denies unknown keys and every value is typed, so a
//! typo or a bad level fails at start-up with the key's path and line, instead of being
//! silently ignored on the admission path.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::{Deserialize, Deserializer};

use crate::yaml::ReadError;

pub use crate::image::ImagePattern;

/// The whole configuration; every section and key is optional and has the documented default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Config {
    /// Pod Security Standards.
    pub pod_security: PodSecurityConfig,
    /// GMSA credential specs for Windows pods.
    pub gmsa: GmsaConfig,
    /// Default resource requests and limits.
    pub default_resources: DefaultResourcesConfig,
    /// imagePullSecrets by image rule.
    pub image_pull_secrets: ImagePullSecretsConfig,
    /// PSP-style security defaults.
    pub security_defaults: SecurityDefaultsConfig,
    /// What to answer when a policy cannot decide.
    pub failure: FailureConfig,
    /// Where the mutating policies say what they changed.
    pub mutation_summary: MutationSummary,
}

/// The configuration file does not describe a valid configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// Dotted path of the offending key, such as `podSecurity.defaults.enforce`.
    pub path: String,
    /// What is wrong, with the line and column when known.
    pub message: String,
}

impl Config {
    /// Parses the YAML configuration file's text. An empty file is the default configuration.
    /// Merge keys (`<<`) are resolved as kubectl's YAML library resolves them; a duplicate key
    /// or nesting deeper than [`crate::yaml::MAX_DEPTH`] is an error.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let has_content = text.lines().any(|line| {
            let line = line.trim();
            !line.is_empty() && !line.starts_with('#') && line != "---"
        });
        if !has_content {
            return Ok(Config::default());
        }
        // First as a generic value: nesting, duplicate keys (which the typed reading below
        // would let a map keep silently) and merge keys (which it would take for a key).
        let merged = match crate::yaml::merged_value(text, 1) {
            Ok(value) => Some(value),
            // The typed reading below says it with the key's path.
            Err(ReadError::Syntax(_)) => None,
            Err(ReadError::DuplicateKey { key, within, at }) => {
                return Err(ConfigError {
                    path: within.map_or_else(|| key.clone(), |within| format!("{within}.{key}")),
                    message: format!("duplicate key{at}"),
                });
            }
            Err(other) => {
                return Err(ConfigError {
                    path: "(top level)".to_owned(),
                    message: other.to_string(),
                });
            }
        };
        let typed_error = |err: serde_path_to_error::Error<serde_yaml_ng::Error>| {
            let path = err.path().to_string();
            let message = err.into_inner().to_string();
            // serde_yaml_ng starts some messages with the path, or its parent's; say it once.
            let message = match message.split_once(": ") {
                Some((prefix, rest))
                    if path == prefix || path.starts_with(&format!("{prefix}.")) =>
                {
                    rest.to_owned()
                }
                _ => message,
            };
            ConfigError {
                path: if path == "." {
                    "(top level)".to_owned()
                } else {
                    path
                },
                message,
            }
        };
        let config: Config = match merged {
            // With merges, from the merged value: errors keep their key path, not their line.
            Some(value) if text.contains("<<") => {
                serde_path_to_error::deserialize(value).map_err(typed_error)?
            }
            _ => serde_path_to_error::deserialize(serde_yaml_ng::Deserializer::from_str(text))
                .map_err(typed_error)?,
        };
        config.check()?;
        Ok(config)
    }

    /// Checks what spans several keys, which the per-key parsing cannot: a rule's default
    /// request must not exceed its default limit, or every pod it applies to would be invalid.
    fn check(&self) -> Result<(), ConfigError> {
        for (i, rule) in self.default_resources.rules.iter().enumerate() {
            for (resource, request) in &rule.default_request {
                let Some(limit) = rule.default.get(resource) else {
                    continue;
                };
                if request.parsed() > limit.parsed() {
                    return Err(ConfigError {
                        path: format!("defaultResources.rules[{i}].defaultRequest.{resource}"),
                        message: format!(
                            "the default request {} is above the default limit {} of the same \
                             rule; pods given both would be invalid",
                            request.0.0, limit.0.0
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

/// A Pod Security Standards level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Unrestricted.
    #[default]
    Privileged,
    /// Prevents known privilege escalations.
    Baseline,
    /// Hardening best practices.
    Restricted,
}

impl Level {
    /// The label value spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// A Pod Security Standards version: `latest` or `v1.N`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyVersion {
    /// A specific minor version of Kubernetes 1.x.
    Minor(u32),
    /// The newest version kadmit knows.
    #[default]
    Latest,
}

impl PolicyVersion {
    /// Parses `latest` or `v1.N`, the spelling of the `*-version` namespace labels.
    pub fn parse(text: &str) -> Option<PolicyVersion> {
        if text == "latest" {
            return Some(PolicyVersion::Latest);
        }
        let minor = text.strip_prefix("v1.")?;
        if minor.is_empty()
            || !minor.bytes().all(|b| b.is_ascii_digit())
            || (minor.len() > 1 && minor.starts_with('0'))
        {
            return None;
        }
        minor.parse().ok().map(PolicyVersion::Minor)
    }
}

impl fmt::Display for PolicyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyVersion::Latest => f.write_str("latest"),
            PolicyVersion::Minor(n) => write!(f, "v1.{n}"),
        }
    }
}

impl<'de> Deserialize<'de> for PolicyVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        PolicyVersion::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid Pod Security version `{text}`: expected `latest` or `v1.N`, such as v1.30"
            ))
        })
    }
}

/// `podSecurity`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct PodSecurityConfig {
    /// Whether Pod Security runs at all (on by default, as in every cluster).
    pub enabled: bool,
    /// Levels used where a namespace has no `pod-security.kubernetes.io/*` labels.
    pub defaults: PodSecurityDefaults,
    /// Requests that are never evaluated.
    pub exemptions: PodSecurityExemptions,
    /// How pod templates of workload resources are treated.
    pub workloads: WorkloadMode,
}

impl Default for PodSecurityConfig {
    fn default() -> Self {
        PodSecurityConfig {
            enabled: true,
            defaults: PodSecurityDefaults::default(),
            exemptions: PodSecurityExemptions::default(),
            workloads: WorkloadMode::default(),
        }
    }
}

/// `podSecurity.defaults`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct PodSecurityDefaults {
    /// Level whose violations deny the pod.
    pub enforce: Level,
    /// Version of the enforce level.
    pub enforce_version: PolicyVersion,
    /// Level whose violations are recorded in the audit annotations.
    pub audit: Level,
    /// Version of the audit level.
    pub audit_version: PolicyVersion,
    /// Level whose violations are returned as warnings.
    pub warn: Level,
    /// Version of the warn level.
    pub warn_version: PolicyVersion,
}

/// `podSecurity.exemptions`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct PodSecurityExemptions {
    /// Requesting users that are exempt.
    pub usernames: Vec<String>,
    /// Namespaces that are exempt.
    pub namespaces: Vec<String>,
    /// Runtime class names that are exempt.
    pub runtime_classes: Vec<String>,
}

/// `podSecurity.workloads`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadMode {
    /// Warn and audit, as upstream Pod Security Admission does.
    #[default]
    Warn,
    /// Deny workloads whose pods would be denied.
    Enforce,
    /// Do not evaluate workloads.
    Ignore,
}

/// `gmsa`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct GmsaConfig {
    /// Whether GMSA expansion and authorization run.
    pub enabled: bool,
    /// Whether a random hostname is set on pods that use GMSA.
    pub random_hostname: bool,
}

impl Default for GmsaConfig {
    fn default() -> Self {
        GmsaConfig {
            enabled: true,
            random_hostname: false,
        }
    }
}

/// `defaultResources`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct DefaultResourcesConfig {
    /// Apply the namespace's LimitRange defaults.
    pub limit_ranges: bool,
    /// Cluster-wide defaults; the first rule whose selector matches the namespace applies.
    pub rules: Vec<ResourceRule>,
}

impl Default for DefaultResourcesConfig {
    fn default() -> Self {
        DefaultResourcesConfig {
            limit_ranges: true,
            rules: Vec::new(),
        }
    }
}

/// One `defaultResources.rules` entry.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ResourceRule {
    /// Namespaces the rule applies to.
    pub namespace_selector: NamespaceSelector,
    /// Default limits.
    pub default: BTreeMap<String, ResourceQuantity>,
    /// Default requests.
    pub default_request: BTreeMap<String, ResourceQuantity>,
}

/// `imagePullSecrets`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ImagePullSecretsConfig {
    /// Rules, in order; every matching rule contributes its secrets.
    pub rules: Vec<PullSecretRule>,
    /// Watch Secrets' metadata so a rule's secret missing from the pod's namespace is reported.
    /// Off by default: RBAC cannot grant metadata alone, so this needs list/watch on Secrets.
    pub watch_secrets: bool,
}

/// One `imagePullSecrets.rules` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PullSecretRule {
    /// Patterns on the normalized image reference.
    #[serde(deserialize_with = "non_empty")]
    pub images: Vec<ImagePattern>,
    /// Secrets added when an image matches.
    #[serde(deserialize_with = "non_empty")]
    pub secrets: Vec<SecretName>,
    /// Namespaces the rule applies to.
    #[serde(default)]
    pub namespace_selector: NamespaceSelector,
}

/// A list that must have at least one element: an empty `images` or `secrets` makes a rule that
/// can never do anything, which is a mistake worth stopping for.
fn non_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let items = Vec::<T>::deserialize(deserializer)?;
    if items.is_empty() {
        return Err(serde::de::Error::custom(
            "must list at least one entry; a rule without one never applies",
        ));
    }
    Ok(items)
}

/// The name of a Secret: a DNS subdomain (lowercase letters, digits, `-` and `.`, at most 253
/// characters), as the API server requires, so a typo cannot reach pods.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretName(pub String);

impl SecretName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for SecretName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        let label_ok = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        if name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(serde::de::Error::custom(format!(
                "`{name}` is not a valid Secret name: use lowercase letters, digits, `-` and `.`, \
                 starting and ending with a letter or digit"
            )));
        }
        Ok(SecretName(name))
    }
}

/// `securityDefaults`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct SecurityDefaultsConfig {
    /// Off by default: changing pods' security settings must be asked for.
    pub enabled: bool,
    /// The seccomp profile type set where neither pod nor container sets one; `null` to not set.
    pub seccomp_profile: Option<SeccompDefault>,
    /// The value set where `allowPrivilegeEscalation` is unset: `false`, or `null` to not set
    /// (`true` is refused: it is already what unset means).
    #[serde(deserialize_with = "only_false")]
    pub allow_privilege_escalation: Option<bool>,
    /// Add `ALL` to `capabilities.drop` where drop is empty.
    pub drop_all_capabilities: bool,
    /// Namespaces the defaults apply to.
    pub namespace_selector: NamespaceSelector,
}

impl Default for SecurityDefaultsConfig {
    fn default() -> Self {
        SecurityDefaultsConfig {
            enabled: false,
            seccomp_profile: Some(SeccompDefault::RuntimeDefault),
            allow_privilege_escalation: Some(false),
            drop_all_capabilities: false,
            namespace_selector: NamespaceSelector::default(),
        }
    }
}

/// `securityDefaults.seccompProfile`: the profile types a default may set. `Localhost` needs a
/// per-node file and `Unconfined` weakens pods, so neither is a sensible default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SeccompDefault {
    /// The container runtime's default profile.
    RuntimeDefault,
}

impl SeccompDefault {
    /// The `seccompProfile.type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            SeccompDefault::RuntimeDefault => "RuntimeDefault",
        }
    }
}

fn only_false<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    match Option::<bool>::deserialize(deserializer)? {
        Some(true) => Err(serde::de::Error::custom(
            "only `false` (or null, to leave it unset) makes sense: an unset \
             allowPrivilegeEscalation already allows escalation",
        )),
        other => Ok(other),
    }
}

/// `mutationSummary`: where the mutating policies say what they changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MutationSummary {
    /// As audit annotations (`<webhook>/default-resources` and so on), visible in audit logs.
    #[default]
    AuditAnnotations,
    /// As warnings, shown by kubectl to whoever created the pod.
    Warnings,
    /// Both.
    Both,
    /// Nowhere (the pod's own annotations, such as `kubernetes.io/limit-ranger`, still say it).
    None,
}

/// A resource quantity such as `500m`, `0.5`, `128Mi` or `1e3`, checked when the configuration
/// is read (a YAML number is accepted as its decimal text), so a typo is a start-up error.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceQuantity(pub Quantity, kube_quantity::ParsedQuantity);

impl ResourceQuantity {
    /// Parses `text`; the error says why it is not a quantity.
    pub fn parse(text: &str) -> Result<ResourceQuantity, String> {
        let quantity = Quantity(text.to_owned());
        let parsed = kube_quantity::ParsedQuantity::try_from(&quantity)
            .map_err(|e| format!("invalid quantity `{text}`: {e}"))?;
        Ok(ResourceQuantity(quantity, parsed))
    }

    /// The value, for comparisons by value (`1Gi` == `1024Mi`, `0.5` == `500m`).
    pub fn parsed(&self) -> &kube_quantity::ParsedQuantity {
        &self.1
    }
}

impl<'de> Deserialize<'de> for ResourceQuantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = String;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quantity such as 500m or 128Mi")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
                Ok(v.to_owned())
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<String, E> {
                Ok(v.to_string())
            }
        }
        let text = deserializer.deserialize_any(Visitor)?;
        ResourceQuantity::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A `metav1.LabelSelector` for namespaces, checked when the configuration is read: operators
/// must be `In`, `NotIn`, `Exists` or `DoesNotExist`, with values exactly when `In`/`NotIn`.
///
/// Matched against the namespace's labels plus `kubernetes.io/metadata.name`, which the API
/// server sets on every namespace (and which snapshot objects written by hand may lack).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NamespaceSelector {
    /// As written.
    pub selector: LabelSelector,
    compiled: kube_core::Selector,
}

impl NamespaceSelector {
    /// Whether the selector is empty and so selects every namespace, without looking it up.
    pub fn selects_all(&self) -> bool {
        self.compiled.selects_all()
    }

    /// Whether a namespace called `name` with `labels` is selected.
    pub fn matches(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        use kube_core::SelectorExt as _;
        if self.compiled.selects_all() {
            return true;
        }
        if labels.contains_key(NAMESPACE_NAME_LABEL) {
            return self.compiled.matches(labels);
        }
        let mut labels = labels.clone();
        labels.insert(NAMESPACE_NAME_LABEL.to_owned(), name.to_owned());
        self.compiled.matches(&labels)
    }
}

/// The label the API server puts on every namespace, holding its name.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

impl<'de> Deserialize<'de> for NamespaceSelector {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let selector = LabelSelector::deserialize(deserializer)?;
        for (i, expression) in selector.match_expressions.iter().flatten().enumerate() {
            let values = expression.values.as_deref().unwrap_or_default();
            let problem = match expression.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => Some("needs at least one value"),
                "Exists" | "DoesNotExist" if !values.is_empty() => Some("takes no values"),
                "In" | "NotIn" | "Exists" | "DoesNotExist" => None,
                _ => Some("is not one of In, NotIn, Exists, DoesNotExist"),
            };
            if let Some(problem) = problem {
                return Err(D::Error::custom(format!(
                    "matchExpressions[{i}] (key `{}`): operator `{}` {problem}",
                    expression.key, expression.operator
                )));
            }
        }
        let compiled = kube_core::Selector::try_from(selector.clone())
            .map_err(|e| D::Error::custom(e.to_string()))?;
        Ok(NamespaceSelector { selector, compiled })
    }
}

/// `failure`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct FailureConfig {
    /// The answer when a policy cannot decide before the deadline.
    pub on_error: OnError,
}

/// `failure.onError`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Deny, with a message naming what could not decide: the safe default.
    #[default]
    Deny,
    /// Allow, with a warning naming what could not decide.
    Allow,
}

impl OnError {
    /// `deny` or `allow`.
    pub fn as_str(self) -> &'static str {
        match self {
            OnError::Deny => "deny",
            OnError::Allow => "allow",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_example_parses() {
        let config = Config::from_yaml(
            r#"
podSecurity:
  defaults: {enforce: baseline, enforceVersion: v1.30, audit: restricted, auditVersion: latest, warn: restricted, warnVersion: latest}
  exemptions: {usernames: [a], namespaces: [kube-system], runtimeClasses: []}
  workloads: enforce
gmsa: {enabled: true, randomHostname: false}
defaultResources:
  limitRanges: true
  rules:
    - namespaceSelector: {}
      default: {cpu: 500m, memory: 256Mi}
      defaultRequest: {cpu: 100m, memory: 128Mi}
imagePullSecrets:
  rules:
    - images: ["registry.example.com/*"]
      secrets: ["regcred"]
      namespaceSelector: {}
securityDefaults: {enabled: false, seccompProfile: RuntimeDefault, allowPrivilegeEscalation: false, dropAllCapabilities: false, namespaceSelector: {}}
failure: {onError: allow}
"#,
        )
        .unwrap();
        assert_eq!(config.pod_security.defaults.enforce, Level::Baseline);
        assert_eq!(
            config.pod_security.defaults.enforce_version,
            PolicyVersion::Minor(30)
        );
        assert_eq!(config.pod_security.workloads, WorkloadMode::Enforce);
        assert_eq!(config.failure.on_error, OnError::Allow);
        assert_eq!(config.default_resources.rules[0].default["cpu"].0.0, "500m");
    }

    #[test]
    fn empty_is_default() {
        assert_eq!(Config::from_yaml("# nothing\n").unwrap(), Config::default());
        assert_eq!(Config::default().failure.on_error, OnError::Deny);
    }

    #[test]
    fn errors_name_the_key() {
        let err =
            Config::from_yaml("podSecurity:\n  defaults:\n    enforse: baseline\n").unwrap_err();
        assert_eq!(err.path, "podSecurity.defaults.enforse");
        assert!(err.message.contains("unknown field `enforse`"), "{err}");
        assert!(err.message.contains("line 3"), "{err}");
        let err =
            Config::from_yaml("podSecurity:\n  defaults:\n    enforce: strict\n").unwrap_err();
        assert_eq!(err.path, "podSecurity.defaults.enforce");
        assert!(err.message.starts_with("unknown variant `strict`"), "{err}");
        let err =
            Config::from_yaml("podSecurity:\n  defaults:\n    warnVersion: v2.1\n").unwrap_err();
        assert_eq!(err.path, "podSecurity.defaults.warnVersion");
        assert!(
            err.message.contains("invalid Pod Security version `v2.1`"),
            "{err}"
        );
        let err = Config::from_yaml("failure:\n  onError: maybe\n").unwrap_err();
        assert_eq!(err.path, "failure.onError");
        let err = Config::from_yaml("nonsense: 1\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("nonsense: unknown field `nonsense`"),
            "{err}"
        );
    }

    #[test]
    fn merge_keys_resolve_and_duplicates_are_errors() {
        let config = Config::from_yaml(
            "x-levels: &strict {enforce: restricted, warn: restricted}\npodSecurity:\n  defaults:\n    <<: *strict\n    warn: baseline\n",
        );
        // The top-level anchor holder is an unknown key: merged, the rest is read.
        assert_eq!(config.unwrap_err().path, "x-levels");
        let config = Config::from_yaml(
            "podSecurity:\n  defaults: &d {enforce: restricted}\n  exemptions: {}\ngmsa: {<<: {enabled: false}}\n",
        )
        .unwrap();
        assert!(!config.gmsa.enabled);
        // After a merge the key path is kept (the line is not known any more).
        let err = Config::from_yaml("podSecurity:\n  defaults:\n    <<: {enforce: strict}\n")
            .unwrap_err();
        assert_eq!(err.path, "podSecurity.defaults.enforce");
        assert!(err.message.starts_with("unknown variant `strict`"), "{err}");
        let err = Config::from_yaml("defaultResources:\n  rules:\n  - default: {cpu: 1, cpu: 2}\n")
            .unwrap_err();
        assert_eq!(err.path, "defaultResources.rules[0].default.cpu");
        assert!(
            err.message
                .starts_with("duplicate key (the mapping starting at line 3"),
            "{err}"
        );
        let deep = format!("gmsa: {}{}\n", "[".repeat(10_000), "]".repeat(10_000));
        let err = Config::from_yaml(&deep).unwrap_err();
        assert!(
            err.message.starts_with("nested more than 128 levels"),
            "{err}"
        );
    }

    #[test]
    fn quantities_and_selectors_are_checked() {
        let config = Config::from_yaml("defaultResources:\n  rules:\n  - default: {cpu: 1, memory: 0.5Gi}\n    defaultRequest: {cpu: 0.25}\n").unwrap();
        assert_eq!(config.default_resources.rules[0].default["cpu"].0.0, "1");
        assert_eq!(
            config.default_resources.rules[0].default_request["cpu"].0.0,
            "0.25"
        );
        let err = Config::from_yaml("defaultResources:\n  rules:\n  - default: {cpu: 12x}\n")
            .unwrap_err();
        assert_eq!(err.path, "defaultResources.rules[0].default.cpu");
        assert!(err.message.starts_with("invalid quantity `12x`"), "{err}");
        assert!(err.message.contains("line 3"), "{err}");
        let err = Config::from_yaml(
            "imagePullSecrets:\n  rules:\n  - namespaceSelector:\n      matchExpressions: [{key: team, operator: Equals, values: [a]}]\n",
        )
        .unwrap_err();
        assert_eq!(err.path, "imagePullSecrets.rules[0].namespaceSelector");
        assert!(
            err.message
                .starts_with("matchExpressions[0] (key `team`): operator `Equals` is not one of"),
            "{err}"
        );
        let err = Config::from_yaml(
            "securityDefaults:\n  namespaceSelector:\n    matchExpressions: [{key: team, operator: In}]\n",
        )
        .unwrap_err();
        assert!(
            err.message
                .contains("operator `In` needs at least one value"),
            "{err}"
        );
    }

    #[test]
    fn versions() {
        assert_eq!(PolicyVersion::parse("v1.0"), Some(PolicyVersion::Minor(0)));
        assert_eq!(
            PolicyVersion::parse("v1.37"),
            Some(PolicyVersion::Minor(37))
        );
        assert_eq!(PolicyVersion::parse("latest"), Some(PolicyVersion::Latest));
        for bad in ["v1", "v1.", "1.2", "v1.02", "v1.x", "v2.0", "Latest"] {
            assert_eq!(PolicyVersion::parse(bad), None, "{bad}");
        }
    }
}
