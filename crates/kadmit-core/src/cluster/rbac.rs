//! Kubernetes RBAC evaluated in memory, over `rbac.authorization.k8s.io/v1` objects.
//!
//! [`Rbac`] answers an [`AccessRequest`] the way the API server's RBAC authorizer answers a
//! SubjectAccessReview, for resource requests:
//!
//! - Every ClusterRoleBinding whose subjects include the user grants the rules of the
//!   ClusterRole it names, for cluster-scoped requests and in every namespace.
//! - For a request in namespace N, every RoleBinding in N whose subjects include the user grants
//!   the rules of the Role it names (looked up in N) or of the ClusterRole it names. A
//!   RoleBinding never grants anything outside its own namespace.
//! - Subjects: `User` matches the user's name, `Group` one of the user's groups, and
//!   `ServiceAccount` the user `system:serviceaccount:<namespace>:<name>`, where an empty
//!   namespace means the RoleBinding's own (in a ClusterRoleBinding, such a subject matches no
//!   one). Other kinds match no one. `apiGroup` is not consulted.
//! - A rule allows the request when its verbs, apiGroups and resources each contain the
//!   request's value or `*`, and its resourceNames are empty or contain the request's name (a
//!   request for all objects, with no name, is not allowed by a rule that lists names).
//!   Resources may name subresources (`pods/log`); a request without a subresource matches only
//!   plain resources (or `*`), a request for `r/s` matches `r/s`, `*/s` or `*`.
//!   nonResourceURLs play no part: every [`AccessRequest`] is a resource request.
//! - A binding whose Role or ClusterRole is missing grants nothing.
//!
//! Not evaluated: a ClusterRole's `aggregationRule`. In a cluster, a controller copies the
//! rules of the selected ClusterRoles into the aggregated ClusterRole's `rules`, and that is
//! what `kubectl get clusterrole -o yaml` prints; here the `rules` as given are used, so a
//! snapshot of a real cluster evaluates like the cluster, while a hand-written aggregated
//! ClusterRole with no `rules` grants nothing.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};

use super::{AccessDecision, AccessRequest};

/// The namespace of a namespaced object whose `metadata.namespace` is unset (as `kubectl
/// apply` would create it without `-n`).
const DEFAULT_NAMESPACE: &str = "default";

/// RBAC roles and bindings, and the authorizer that evaluates them.
///
/// Objects are keyed by namespace and name: inserting an object with the name of one already
/// held replaces it.
#[derive(Debug, Default, Clone)]
pub struct Rbac {
    /// Role rules by namespace, then name.
    roles: HashMap<String, HashMap<String, Vec<PolicyRule>>>,
    /// ClusterRole rules by name.
    cluster_roles: HashMap<String, Vec<PolicyRule>>,
    /// RoleBindings by namespace, then name (ordered, so the binding an allow reason cites does
    /// not depend on hashing).
    role_bindings: HashMap<String, BTreeMap<String, Binding>>,
    /// ClusterRoleBindings by name.
    cluster_role_bindings: BTreeMap<String, Binding>,
}

/// What the authorizer needs from a RoleBinding or ClusterRoleBinding.
#[derive(Debug, Clone)]
struct Binding {
    role_ref: RoleRef,
    subjects: Vec<Subject>,
}

/// A role reference that cannot be resolved: the binding grants nothing.
enum RoleRefError {
    NotFound {
        resource: &'static str,
        name: String,
    },
    UnsupportedKind(String),
}

impl RoleRefError {
    /// The message upstream's rule resolver gives for the same failure.
    fn message(&self) -> String {
        match self {
            RoleRefError::NotFound { resource, name } => {
                format!("{resource}.rbac.authorization.k8s.io {name:?} not found")
            }
            RoleRefError::UnsupportedKind(kind) => {
                format!("unsupported role reference kind: {kind:?}")
            }
        }
    }
}

impl Rbac {
    /// No roles and no bindings: every request is denied.
    pub fn new() -> Rbac {
        Rbac::default()
    }

    /// Whether no Role, ClusterRole, RoleBinding or ClusterRoleBinding has been inserted.
    pub fn is_empty(&self) -> bool {
        self.roles.values().all(HashMap::is_empty)
            && self.cluster_roles.is_empty()
            && self.role_bindings.values().all(BTreeMap::is_empty)
            && self.cluster_role_bindings.is_empty()
    }

    /// Adds a Role (in `metadata.namespace`, else `default`).
    pub fn insert_role(&mut self, role: Role) {
        let namespace = namespace_of(role.metadata.namespace);
        let name = role.metadata.name.unwrap_or_default();
        self.roles
            .entry(namespace)
            .or_default()
            .insert(name, role.rules.unwrap_or_default());
    }

    /// Adds a ClusterRole. Its `aggregationRule` is not evaluated (see the module docs).
    pub fn insert_cluster_role(&mut self, cluster_role: ClusterRole) {
        let name = cluster_role.metadata.name.unwrap_or_default();
        self.cluster_roles
            .insert(name, cluster_role.rules.unwrap_or_default());
    }

    /// Adds a RoleBinding (in `metadata.namespace`, else `default`).
    pub fn insert_role_binding(&mut self, binding: RoleBinding) {
        let namespace = namespace_of(binding.metadata.namespace);
        let name = binding.metadata.name.unwrap_or_default();
        self.role_bindings.entry(namespace).or_default().insert(
            name,
            Binding {
                role_ref: binding.role_ref,
                subjects: binding.subjects.unwrap_or_default(),
            },
        );
    }

    /// Adds a ClusterRoleBinding.
    pub fn insert_cluster_role_binding(&mut self, binding: ClusterRoleBinding) {
        let name = binding.metadata.name.unwrap_or_default();
        self.cluster_role_bindings.insert(
            name,
            Binding {
                role_ref: binding.role_ref,
                subjects: binding.subjects.unwrap_or_default(),
            },
        );
    }

    /// Whether the RBAC objects allow `request`.
    ///
    /// Allowed: `reason` names the first binding found that grants it (ClusterRoleBindings
    /// first, then the namespace's RoleBindings, each by name), worded as upstream RBAC words
    /// it, such as `RBAC: allowed by RoleBinding "use-specs/ns" of ClusterRole "users" to
    /// ServiceAccount "sa/ns"`.
    ///
    /// Denied: like upstream RBAC, which gives no reason when no rule matches, `reason` is
    /// empty — unless a binding that applies to the user names a Role or ClusterRole that does
    /// not exist, in which case upstream's resolution errors are the reason, such as
    /// `RBAC: clusterrole.rbac.authorization.k8s.io "users" not found` (several are listed as
    /// `RBAC: [first, second]`).
    pub fn authorize(&self, request: &AccessRequest) -> AccessDecision {
        let (resource, subresource) = match request.resource.split_once('/') {
            Some((resource, subresource)) => (resource, subresource),
            None => (request.resource.as_str(), ""),
        };
        let target = Target {
            request,
            resource,
            subresource,
        };
        let mut errors: Vec<String> = Vec::new();
        let mut note_error = |error: RoleRefError| {
            let message = error.message();
            if !errors.contains(&message) {
                errors.push(message);
            }
        };

        for (name, binding) in &self.cluster_role_bindings {
            let Some(subject) = binding.applicable_subject(request, "") else {
                continue;
            };
            match self.rules_of(&binding.role_ref, "") {
                Err(error) => note_error(error),
                Ok(rules) if rules.iter().any(|rule| target.allowed_by(rule)) => {
                    return allowed(format!(
                        "RBAC: allowed by ClusterRoleBinding {name:?} of {} {:?} to {}",
                        binding.role_ref.kind,
                        binding.role_ref.name,
                        describe_subject(subject, ""),
                    ));
                }
                Ok(_) => {}
            }
        }

        let namespace = request.namespace.as_str();
        if !namespace.is_empty()
            && let Some(bindings) = self.role_bindings.get(namespace)
        {
            for (name, binding) in bindings {
                let Some(subject) = binding.applicable_subject(request, namespace) else {
                    continue;
                };
                match self.rules_of(&binding.role_ref, namespace) {
                    Err(error) => note_error(error),
                    Ok(rules) if rules.iter().any(|rule| target.allowed_by(rule)) => {
                        return allowed(format!(
                            "RBAC: allowed by RoleBinding {:?} of {} {:?} to {}",
                            format!("{name}/{namespace}"),
                            binding.role_ref.kind,
                            binding.role_ref.name,
                            describe_subject(subject, namespace),
                        ));
                    }
                    Ok(_) => {}
                }
            }
        }

        let reason = match errors.as_slice() {
            [] => String::new(),
            [only] => format!("RBAC: {only}"),
            several => format!("RBAC: [{}]", several.join(", ")),
        };
        AccessDecision {
            allowed: false,
            reason,
        }
    }

    /// The rules a binding in `binding_namespace` (empty for a ClusterRoleBinding) refers to.
    fn rules_of(
        &self,
        role_ref: &RoleRef,
        binding_namespace: &str,
    ) -> Result<&[PolicyRule], RoleRefError> {
        let found = match role_ref.kind.as_str() {
            "Role" => self
                .roles
                .get(binding_namespace)
                .and_then(|roles| roles.get(&role_ref.name)),
            "ClusterRole" => self.cluster_roles.get(&role_ref.name),
            other => return Err(RoleRefError::UnsupportedKind(other.to_owned())),
        };
        found
            .map(Vec::as_slice)
            .ok_or_else(|| RoleRefError::NotFound {
                resource: if role_ref.kind == "Role" {
                    "role"
                } else {
                    "clusterrole"
                },
                name: role_ref.name.clone(),
            })
    }
}

impl Binding {
    /// The first subject that is the request's user, if any.
    fn applicable_subject(
        &self,
        request: &AccessRequest,
        binding_namespace: &str,
    ) -> Option<&Subject> {
        self.subjects
            .iter()
            .find(|subject| subject_applies(subject, request, binding_namespace))
    }
}

/// The request, with its resource split into resource and subresource.
struct Target<'a> {
    request: &'a AccessRequest,
    resource: &'a str,
    subresource: &'a str,
}

impl Target<'_> {
    fn allowed_by(&self, rule: &PolicyRule) -> bool {
        let request = self.request;
        rule.verbs
            .iter()
            .any(|verb| verb == "*" || *verb == request.verb)
            && rule
                .api_groups
                .iter()
                .flatten()
                .any(|group| group == "*" || *group == request.group)
            && rule
                .resources
                .iter()
                .flatten()
                .any(|resource| self.resource_matches(resource))
            && match rule.resource_names.as_deref() {
                None | Some([]) => true,
                Some(names) => names.contains(&request.name),
            }
    }

    fn resource_matches(&self, rule_resource: &str) -> bool {
        if rule_resource == "*" {
            return true;
        }
        if self.subresource.is_empty() {
            return rule_resource == self.resource;
        }
        match rule_resource.split_once('/') {
            Some((resource, subresource)) => {
                subresource == self.subresource && (resource == "*" || resource == self.resource)
            }
            None => false,
        }
    }
}

fn subject_applies(subject: &Subject, request: &AccessRequest, binding_namespace: &str) -> bool {
    match subject.kind.as_str() {
        "User" => subject.name == request.user,
        "Group" => request.groups.contains(&subject.name),
        "ServiceAccount" => {
            let namespace = match subject.namespace.as_deref() {
                Some(namespace) if !namespace.is_empty() => namespace,
                _ => binding_namespace,
            };
            !namespace.is_empty()
                && request
                    .user
                    .strip_prefix("system:serviceaccount:")
                    .and_then(|rest| rest.split_once(':'))
                    .is_some_and(|(ns, name)| ns == namespace && name == subject.name)
        }
        _ => false,
    }
}

/// A subject as upstream's allow reason shows it: `ServiceAccount "name/namespace"`, else
/// `Kind "name"`.
fn describe_subject(subject: &Subject, binding_namespace: &str) -> String {
    if subject.kind == "ServiceAccount" {
        let namespace = match subject.namespace.as_deref() {
            Some(namespace) if !namespace.is_empty() => namespace,
            _ => binding_namespace,
        };
        format!(
            "{} {:?}",
            subject.kind,
            format!("{}/{namespace}", subject.name)
        )
    } else {
        format!("{} {:?}", subject.kind, subject.name)
    }
}

fn allowed(reason: String) -> AccessDecision {
    AccessDecision {
        allowed: true,
        reason,
    }
}

fn namespace_of(namespace: Option<String>) -> String {
    namespace
        .filter(|namespace| !namespace.is_empty())
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn meta(namespace: Option<&str>, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: namespace.map(str::to_owned),
            ..ObjectMeta::default()
        }
    }

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
        let strings = |s: &[&str]| s.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        PolicyRule {
            verbs: strings(verbs),
            api_groups: Some(strings(groups)),
            resources: Some(strings(resources)),
            resource_names: (!names.is_empty()).then(|| strings(names)),
            non_resource_urls: None,
        }
    }

    fn use_rule(names: &[&str]) -> PolicyRule {
        rule(
            &["use"],
            &["windows.k8s.io"],
            &["gmsacredentialspecs"],
            names,
        )
    }

    fn subject(kind: &str, namespace: Option<&str>, name: &str) -> Subject {
        Subject {
            api_group: None,
            kind: kind.to_owned(),
            name: name.to_owned(),
            namespace: namespace.map(str::to_owned),
        }
    }

    fn sa(namespace: Option<&str>, name: &str) -> Subject {
        subject("ServiceAccount", namespace, name)
    }

    fn role_ref(kind: &str, name: &str) -> RoleRef {
        RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            kind: kind.to_owned(),
            name: name.to_owned(),
        }
    }

    fn cluster_role(name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
        ClusterRole {
            metadata: meta(None, name),
            rules: Some(rules),
            aggregation_rule: None,
        }
    }

    fn role(namespace: &str, name: &str, rules: Vec<PolicyRule>) -> Role {
        Role {
            metadata: meta(Some(namespace), name),
            rules: Some(rules),
        }
    }

    fn role_binding(
        namespace: &str,
        name: &str,
        to: RoleRef,
        subjects: Vec<Subject>,
    ) -> RoleBinding {
        RoleBinding {
            metadata: meta(Some(namespace), name),
            role_ref: to,
            subjects: Some(subjects),
        }
    }

    fn cluster_role_binding(name: &str, to: RoleRef, subjects: Vec<Subject>) -> ClusterRoleBinding {
        ClusterRoleBinding {
            metadata: meta(None, name),
            role_ref: to,
            subjects: Some(subjects),
        }
    }

    /// A ClusterRole `users` granting `rules`, bound in `ns` to `subjects`.
    fn bound_in(ns: &str, rules: Vec<PolicyRule>, subjects: Vec<Subject>) -> Rbac {
        let mut rbac = Rbac::new();
        rbac.insert_cluster_role(cluster_role("users", rules));
        rbac.insert_role_binding(role_binding(
            ns,
            "use-specs",
            role_ref("ClusterRole", "users"),
            subjects,
        ));
        rbac
    }

    fn may_use(rbac: &Rbac, ns: &str, sa: &str, spec: &str) -> bool {
        rbac.authorize(&AccessRequest::use_gmsa(ns, sa, spec))
            .allowed
    }

    #[test]
    fn empty_rbac_denies_without_reason() {
        let rbac = Rbac::new();
        assert!(rbac.is_empty());
        let decision = rbac.authorize(&AccessRequest::use_gmsa("ns", "sa", "spec"));
        assert_eq!(
            decision,
            AccessDecision {
                allowed: false,
                reason: String::new()
            }
        );
    }

    #[test]
    fn role_binding_to_cluster_role_grants_listed_names_with_upstream_reason() {
        let rbac = bound_in(
            "ns",
            vec![use_rule(&["a", "b"])],
            vec![sa(Some("ns"), "sa")],
        );
        assert!(!rbac.is_empty());
        let decision = rbac.authorize(&AccessRequest::use_gmsa("ns", "sa", "a"));
        assert_eq!(
            decision,
            AccessDecision {
                allowed: true,
                reason: r#"RBAC: allowed by RoleBinding "use-specs/ns" of ClusterRole "users" to ServiceAccount "sa/ns""#.to_owned(),
            }
        );
        assert!(may_use(&rbac, "ns", "sa", "b"));
        // resourceNames restrict; a plain miss has no reason.
        let decision = rbac.authorize(&AccessRequest::use_gmsa("ns", "sa", "c"));
        assert_eq!(decision.reason, "");
        assert!(!decision.allowed);
        // A request for all objects is not granted by a rule that lists names.
        assert!(!may_use(&rbac, "ns", "sa", ""));
        // Another service account of the namespace is not the subject.
        assert!(!may_use(&rbac, "ns", "other", "a"));
    }

    #[test]
    fn empty_resource_names_grant_every_name() {
        let rbac = bound_in("ns", vec![use_rule(&[])], vec![sa(Some("ns"), "sa")]);
        assert!(may_use(&rbac, "ns", "sa", "anything"));
        assert!(may_use(&rbac, "ns", "sa", ""));
    }

    #[test]
    fn wildcards_for_verbs_groups_and_resources() {
        for (rule, expected) in [
            (
                rule(&["*"], &["windows.k8s.io"], &["gmsacredentialspecs"], &[]),
                true,
            ),
            (rule(&["use"], &["*"], &["gmsacredentialspecs"], &[]), true),
            (rule(&["use"], &["windows.k8s.io"], &["*"], &[]), true),
            (rule(&["*"], &["*"], &["*"], &["spec"]), true),
            (
                rule(
                    &["get", "list"],
                    &["windows.k8s.io"],
                    &["gmsacredentialspecs"],
                    &[],
                ),
                false,
            ),
            (rule(&["use"], &[""], &["gmsacredentialspecs"], &[]), false),
            (
                rule(&["use"], &["windows.k8s.io"], &["gmsacredentialspec"], &[]),
                false,
            ),
            // A subresource rule does not grant the plain resource.
            (
                rule(
                    &["use"],
                    &["windows.k8s.io"],
                    &["gmsacredentialspecs/status"],
                    &[],
                ),
                false,
            ),
            (
                rule(&["use"], &["windows.k8s.io"], &["*/status"], &[]),
                false,
            ),
            // Matching is exact: no case folding, no prefix.
            (
                rule(&["USE"], &["windows.k8s.io"], &["gmsacredentialspecs"], &[]),
                false,
            ),
            (
                rule(&["use"], &["windows"], &["gmsacredentialspecs"], &[]),
                false,
            ),
        ] {
            let rbac = bound_in("ns", vec![rule.clone()], vec![sa(Some("ns"), "sa")]);
            assert_eq!(may_use(&rbac, "ns", "sa", "spec"), expected, "{rule:?}");
        }
        // Missing apiGroups or resources match nothing.
        let mut no_groups = use_rule(&[]);
        no_groups.api_groups = None;
        let mut no_resources = use_rule(&[]);
        no_resources.resources = None;
        for rule in [no_groups, no_resources] {
            let rbac = bound_in("ns", vec![rule], vec![sa(Some("ns"), "sa")]);
            assert!(!may_use(&rbac, "ns", "sa", "spec"));
        }
    }

    #[test]
    fn subresource_requests() {
        let rbac = |resource: &str| {
            bound_in(
                "ns",
                vec![rule(&["get"], &[""], &[resource], &[])],
                vec![subject("User", None, "alice")],
            )
        };
        let request = |resource: &str| AccessRequest {
            user: "alice".to_owned(),
            groups: vec![],
            namespace: "ns".to_owned(),
            verb: "get".to_owned(),
            group: String::new(),
            version: String::new(),
            resource: resource.to_owned(),
            name: "p".to_owned(),
        };
        for (rule_resource, requested, expected) in [
            ("pods/log", "pods/log", true),
            ("*/log", "pods/log", true),
            ("*", "pods/log", true),
            ("pods", "pods/log", false),
            ("pods/status", "pods/log", false),
            ("*/log", "pods", false),
            ("pods/log", "pods", false),
            ("pods", "pods", true),
        ] {
            assert_eq!(
                rbac(rule_resource).authorize(&request(requested)).allowed,
                expected,
                "rule {rule_resource}, request {requested}"
            );
        }
    }

    #[test]
    fn role_binding_to_role_uses_the_role_of_its_namespace() {
        let mut rbac = Rbac::new();
        rbac.insert_role(role("ns", "users", vec![use_rule(&["a"])]));
        rbac.insert_role(role("other", "users", vec![use_rule(&["b"])]));
        rbac.insert_role_binding(role_binding(
            "ns",
            "use-specs",
            role_ref("Role", "users"),
            vec![sa(Some("ns"), "sa")],
        ));
        let decision = rbac.authorize(&AccessRequest::use_gmsa("ns", "sa", "a"));
        assert!(decision.allowed);
        assert_eq!(
            decision.reason,
            r#"RBAC: allowed by RoleBinding "use-specs/ns" of Role "users" to ServiceAccount "sa/ns""#
        );
        // The same-named Role of another namespace is not consulted.
        assert!(!may_use(&rbac, "ns", "sa", "b"));
    }

    #[test]
    fn role_binding_grants_only_in_its_namespace() {
        // Bound in `ns`, to a service account of `other`: it may use the spec in `ns` only.
        let rbac = bound_in("ns", vec![use_rule(&[])], vec![sa(Some("other"), "sa")]);
        let foreign = AccessRequest {
            namespace: "ns".to_owned(),
            ..AccessRequest::use_gmsa("other", "sa", "spec")
        };
        assert!(rbac.authorize(&foreign).allowed);
        assert!(!may_use(&rbac, "other", "sa", "spec"));
        // A binding in `ns` grants nothing in `ns2` nor cluster-wide.
        let rbac = bound_in(
            "ns",
            vec![use_rule(&[])],
            vec![subject("User", None, "alice")],
        );
        let mut request = AccessRequest {
            user: "alice".to_owned(),
            groups: vec![],
            ..AccessRequest::use_gmsa("ns", "x", "spec")
        };
        assert!(rbac.authorize(&request).allowed);
        request.namespace = "ns2".to_owned();
        assert!(!rbac.authorize(&request).allowed);
        request.namespace = String::new();
        assert!(!rbac.authorize(&request).allowed);
    }

    #[test]
    fn service_account_subject_without_namespace_takes_the_bindings() {
        let rbac = bound_in("ns", vec![use_rule(&[])], vec![sa(None, "sa")]);
        let decision = rbac.authorize(&AccessRequest::use_gmsa("ns", "sa", "spec"));
        assert!(decision.allowed);
        assert!(
            decision.reason.ends_with(r#"to ServiceAccount "sa/ns""#),
            "{}",
            decision.reason
        );
        let rbac = bound_in("ns", vec![use_rule(&[])], vec![sa(Some(""), "sa")]);
        assert!(may_use(&rbac, "ns", "sa", "spec"));

        // In a ClusterRoleBinding such a subject matches no one.
        let mut rbac = Rbac::new();
        rbac.insert_cluster_role(cluster_role("users", vec![use_rule(&[])]));
        rbac.insert_cluster_role_binding(cluster_role_binding(
            "everyone",
            role_ref("ClusterRole", "users"),
            vec![sa(None, "sa")],
        ));
        assert!(!may_use(&rbac, "ns", "sa", "spec"));
        assert!(!may_use(&rbac, "", "sa", "spec"));
    }

    #[test]
    fn cluster_role_binding_grants_everywhere() {
        let mut rbac = Rbac::new();
        rbac.insert_cluster_role(cluster_role("users", vec![use_rule(&["a"])]));
        rbac.insert_cluster_role_binding(cluster_role_binding(
            "sa-uses-a",
            role_ref("ClusterRole", "users"),
            vec![subject("User", None, "nobody"), sa(Some("ns"), "sa")],
        ));
        let decision = rbac.authorize(&AccessRequest::use_gmsa("ns", "sa", "a"));
        assert_eq!(
            decision.reason,
            r#"RBAC: allowed by ClusterRoleBinding "sa-uses-a" of ClusterRole "users" to ServiceAccount "sa/ns""#
        );
        assert!(decision.allowed);
        // In another namespace, and cluster-wide.
        let elsewhere = AccessRequest {
            namespace: "elsewhere".to_owned(),
            ..AccessRequest::use_gmsa("ns", "sa", "a")
        };
        assert!(rbac.authorize(&elsewhere).allowed);
        let cluster_wide = AccessRequest {
            namespace: String::new(),
            ..AccessRequest::use_gmsa("ns", "sa", "a")
        };
        assert!(rbac.authorize(&cluster_wide).allowed);
        assert!(!may_use(&rbac, "ns", "sa", "b"));
        assert!(!may_use(&rbac, "other", "sa", "a"));
    }

    #[test]
    fn cluster_role_binding_to_a_role_grants_nothing() {
        let mut rbac = Rbac::new();
        rbac.insert_role(role("ns", "users", vec![use_rule(&[])]));
        rbac.insert_cluster_role_binding(cluster_role_binding(
            "bad",
            role_ref("Role", "users"),
            vec![sa(Some("ns"), "sa")],
        ));
        let decision = rbac.authorize(&AccessRequest::use_gmsa("ns", "sa", "spec"));
        assert!(!decision.allowed);
        assert_eq!(
            decision.reason,
            r#"RBAC: role.rbac.authorization.k8s.io "users" not found"#
        );
    }

    #[test]
    fn group_subjects() {
        for group in ["system:serviceaccounts", "system:serviceaccounts:ns"] {
            let rbac = bound_in(
                "ns",
                vec![use_rule(&[])],
                vec![subject("Group", None, group)],
            );
            let decision = rbac.authorize(&AccessRequest::use_gmsa("ns", "any-sa", "spec"));
            assert!(decision.allowed, "{group}");
            assert_eq!(
                decision.reason,
                format!(
                    r#"RBAC: allowed by RoleBinding "use-specs/ns" of ClusterRole "users" to Group "{group}""#
                )
            );
        }
        // The namespace group of another namespace.
        let mut rbac = Rbac::new();
        rbac.insert_cluster_role(cluster_role("users", vec![use_rule(&[])]));
        rbac.insert_cluster_role_binding(cluster_role_binding(
            "ns-sas",
            role_ref("ClusterRole", "users"),
            vec![subject("Group", None, "system:serviceaccounts:ns")],
        ));
        assert!(may_use(&rbac, "ns", "sa", "spec"));
        assert!(!may_use(&rbac, "other", "sa", "spec"));
        // A user subject is not a service account's name; unknown kinds match no one.
        let rbac = bound_in(
            "ns",
            vec![use_rule(&[])],
            vec![
                subject("User", None, "sa"),
                subject("Robot", Some("ns"), "sa"),
            ],
        );
        assert!(!may_use(&rbac, "ns", "sa", "spec"));
        let rbac = bound_in(
            "ns",
            vec![use_rule(&[])],
            vec![subject("User", None, "system:serviceaccount:ns:sa")],
        );
        assert!(may_use(&rbac, "ns", "sa", "spec"));
    }

    #[test]
    fn missing_role_ref_target_grants_nothing_and_says_so() {
        let mut rbac = Rbac::new();
        rbac.insert_role_binding(role_binding(
            "ns",
            "a-to-missing-cluster-role",
            role_ref("ClusterRole", "missing"),
            vec![sa(Some("ns"), "sa")],
        ));
        rbac.insert_role_binding(role_binding(
            "ns",
            "b-to-missing-role",
            role_ref("Role", "missing"),
            vec![sa(Some("ns"), "sa")],
        ));
        rbac.insert_role_binding(role_binding(
            "ns",
            "c-same-missing-role",
            role_ref("Role", "missing"),
            vec![sa(Some("ns"), "sa")],
        ));
        let decision = rbac.authorize(&AccessRequest::use_gmsa("ns", "sa", "spec"));
        assert!(!decision.allowed);
        assert_eq!(
            decision.reason,
            r#"RBAC: [clusterrole.rbac.authorization.k8s.io "missing" not found, role.rbac.authorization.k8s.io "missing" not found]"#
        );
        // Bindings that do not apply to the user are not resolved.
        assert_eq!(
            rbac.authorize(&AccessRequest::use_gmsa("ns", "other", "spec")),
            AccessDecision {
                allowed: false,
                reason: String::new()
            }
        );
        // An unsupported kind.
        let mut rbac = Rbac::new();
        rbac.insert_role_binding(role_binding(
            "ns",
            "odd",
            role_ref("Policy", "x"),
            vec![sa(Some("ns"), "sa")],
        ));
        assert_eq!(
            rbac.authorize(&AccessRequest::use_gmsa("ns", "sa", "spec"))
                .reason,
            r#"RBAC: unsupported role reference kind: "Policy""#
        );
        // Another binding granting it wins over the error.
        let mut rbac = bound_in("ns", vec![use_rule(&[])], vec![sa(Some("ns"), "sa")]);
        rbac.insert_role_binding(role_binding(
            "ns",
            "a-broken",
            role_ref("ClusterRole", "missing"),
            vec![sa(Some("ns"), "sa")],
        ));
        assert!(may_use(&rbac, "ns", "sa", "spec"));
    }

    #[test]
    fn aggregation_rule_is_not_evaluated() {
        use k8s_openapi::api::rbac::v1::AggregationRule;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
        let mut aggregated = cluster_role("aggregated", vec![]);
        aggregated.aggregation_rule = Some(AggregationRule {
            cluster_role_selectors: Some(vec![LabelSelector::default()]),
        });
        let mut rbac = Rbac::new();
        rbac.insert_cluster_role(cluster_role("users", vec![use_rule(&[])]));
        rbac.insert_cluster_role(aggregated);
        rbac.insert_role_binding(role_binding(
            "ns",
            "b",
            role_ref("ClusterRole", "aggregated"),
            vec![sa(Some("ns"), "sa")],
        ));
        assert!(!may_use(&rbac, "ns", "sa", "spec"));
    }

    #[test]
    fn first_binding_by_name_is_cited_and_replacement_by_name() {
        let mut rbac = Rbac::new();
        rbac.insert_cluster_role(cluster_role("users", vec![use_rule(&[])]));
        for name in ["zz", "aa", "mm"] {
            rbac.insert_role_binding(role_binding(
                "ns",
                name,
                role_ref("ClusterRole", "users"),
                vec![sa(Some("ns"), "sa")],
            ));
        }
        let decision = rbac.authorize(&AccessRequest::use_gmsa("ns", "sa", "spec"));
        assert!(
            decision.reason.contains(r#"RoleBinding "aa/ns""#),
            "{}",
            decision.reason
        );
        // Re-inserting a ClusterRole by name replaces its rules.
        rbac.insert_cluster_role(cluster_role("users", vec![use_rule(&["only"])]));
        assert!(!may_use(&rbac, "ns", "sa", "spec"));
        assert!(may_use(&rbac, "ns", "sa", "only"));
    }

    #[test]
    fn objects_without_namespace_are_in_default() {
        let mut rbac = Rbac::new();
        rbac.insert_role(Role {
            metadata: meta(None, "users"),
            rules: Some(vec![use_rule(&[])]),
        });
        rbac.insert_role_binding(RoleBinding {
            metadata: meta(None, "b"),
            role_ref: role_ref("Role", "users"),
            subjects: Some(vec![sa(None, "sa")]),
        });
        assert!(may_use(&rbac, "default", "sa", "spec"));
        assert!(!may_use(&rbac, "ns", "sa", "spec"));
    }
}
