//! The upstream windows-gmsa integration-test manifests (`../shared/conformance/gmsa`), rendered
//! as the upstream tests render them, loaded as a cluster snapshot: the credential specs are
//! found, and the snapshot's RBAC lets the test's service account `use` exactly the specs the
//! templates grant.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use kadmit_core::cluster::{AccessRequest, ClusterView, Snapshot};

fn shared() -> Option<PathBuf> {
    let dir = std::env::var_os("KADMIT_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    if dir.is_dir() {
        Some(dir)
    } else {
        println!(
            "SKIPPED gmsa snapshot: {} is absent (set KADMIT_SHARED_DIR)",
            dir.display()
        );
        None
    }
}

/// The values the upstream tests fill the templates with.
struct Vars {
    namespace: String,
    service_account: String,
    cluster_role: String,
    role_binding: String,
    cred_specs: Vec<String>,
}

impl Vars {
    fn new(test: &str) -> Vars {
        Vars {
            namespace: format!("gmsa-webhook-test-{test}"),
            service_account: format!("{test}-service-account"),
            cluster_role: format!("{test}-credspecs-users"),
            role_binding: format!("{test}-use-credspecs"),
            cred_specs: (0..3).map(|i| format!("{test}-cred-spec-{i}")).collect(),
        }
    }
}

/// Renders a template: the `{{- range $_, $csn := .CredSpecNames }} … {{- end }}` block once
/// per name in `granted` (with Go's `{{-` trimming of the whitespace before it), then the plain
/// placeholders.
fn render(template: &str, vars: &Vars, granted: &[String]) -> String {
    let mut text = template.to_owned();
    if let Some(start) = text.find("{{- range") {
        let body_start = start + text[start..].find("}}").unwrap() + 2;
        let end = body_start + text[body_start..].find("{{- end }}").unwrap();
        let body = text[body_start..end].trim_end();
        assert!(body.contains("{{ $csn }}"), "{body:?}");
        let mut rendered = text[..start].trim_end().to_owned();
        for name in granted {
            rendered.push_str(&body.replace("{{ $csn }}", name));
        }
        rendered.push_str(&text[end + "{{- end }}".len()..]);
        text = rendered;
    }
    let mut text = text
        .replace("{{ .Namespace }}", &vars.namespace)
        .replace("{{ .ServiceAccountName }}", &vars.service_account)
        .replace("{{ .ClusterRoleName }}", &vars.cluster_role)
        .replace("{{ .RoleBindingName }}", &vars.role_binding);
    for (i, name) in vars.cred_specs.iter().enumerate() {
        text = text.replace(&format!("{{{{ index .CredSpecNames {i} }}}}"), name);
    }
    assert!(!text.contains("{{"), "unrendered placeholder in {text}");
    text
}

/// A snapshot of the rendered `files` (relative to `integration-templates/`, or `crd/...`).
fn load(gmsa: &Path, files: &[&str], vars: &Vars, granted: &[String]) -> Snapshot {
    let documents: Vec<String> = files
        .iter()
        .map(|file| {
            let path = if file.starts_with("crd/") {
                gmsa.join(file)
            } else {
                gmsa.join("integration-templates").join(file)
            };
            let template = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            render(&template, vars, granted)
        })
        .collect();
    let text = documents.join("\n---\n");
    Snapshot::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn may_use(snapshot: &Snapshot, namespace: &str, service_account: &str, spec: &str) -> bool {
    let decision = snapshot
        .authorize(
            &AccessRequest::use_gmsa(namespace, service_account, spec),
            None,
        )
        .unwrap();
    if decision.allowed {
        assert!(
            decision.reason.starts_with("RBAC: allowed by "),
            "{decision:?}"
        );
    }
    decision.allowed
}

const CREDSPECS: [&str; 3] = ["credspec-0.yml", "credspec-1.yml", "credspec-2.yml"];

#[test]
fn credspecs_load_with_their_contents() {
    let Some(shared) = shared() else { return };
    let gmsa = shared.join("conformance/gmsa");
    let vars = Vars::new("contents");
    let mut files = vec!["crd/gmsa-crd.yml"];
    files.extend(CREDSPECS);
    let snapshot = load(&gmsa, &files, &vars, &[]);
    assert_eq!(
        snapshot
            .unused
            .get("CustomResourceDefinition (not a kind kadmit reads)"),
        Some(&1),
        "{:?}",
        snapshot.unused
    );
    for (i, name) in vars.cred_specs.iter().enumerate() {
        let spec = snapshot.gmsa_credential_spec(name).unwrap().unwrap();
        assert_eq!(&spec.name, name);
        let credspec = spec.credspec.as_ref().unwrap();
        let account = format!("WebApplication{i}");
        assert_eq!(
            credspec
                .pointer("/DomainJoinConfig/MachineAccountName")
                .and_then(|v| v.as_str()),
            Some(account.as_str()),
            "{name} (credspec-1 is windows.k8s.io/v1alpha1)"
        );
        assert_eq!(
            credspec["ActiveDirectoryConfig"]["GroupManagedServiceAccounts"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }
    assert!(
        snapshot
            .gmsa_credential_spec("contents-cred-spec-3")
            .unwrap()
            .is_none()
    );

    let snapshot = snapshot_with_host_agent(&gmsa, &vars);
    let spec = snapshot
        .gmsa_credential_spec(&vars.cred_specs[0])
        .unwrap()
        .unwrap();
    assert_eq!(
        spec.credspec
            .as_ref()
            .unwrap()
            .pointer("/ActiveDirectoryConfig/HostAccountConfig/PluginInput")
            .and_then(|v| v.as_str()),
        Some("contoso.com:gmsaccg:<password>")
    );
}

fn snapshot_with_host_agent(gmsa: &Path, vars: &Vars) -> Snapshot {
    load(gmsa, &["credspec-with-hostagentconfig.yml"], vars, &[])
}

#[test]
fn service_account_may_use_the_specs_its_role_names() {
    let Some(shared) = shared() else { return };
    let gmsa = shared.join("conformance/gmsa");
    let vars = Vars::new("some");
    let granted = vars.cred_specs[..2].to_vec();
    let mut files = vec![
        "service-account.yml",
        "credspecs-users-rbac-role.yml",
        "sa-rbac-binding.yml",
    ];
    files.extend(CREDSPECS);
    let snapshot = load(&gmsa, &files, &vars, &granted);
    assert!(snapshot.unused.is_empty(), "{:?}", snapshot.unused);
    assert!(snapshot.service_account_exists(&vars.namespace, &vars.service_account));

    let (ns, sa) = (vars.namespace.as_str(), vars.service_account.as_str());
    let decision = snapshot
        .authorize(&AccessRequest::use_gmsa(ns, sa, &granted[0]), None)
        .unwrap();
    assert!(decision.allowed);
    assert_eq!(
        decision.reason,
        format!(
            r#"RBAC: allowed by RoleBinding "{}/{ns}" of ClusterRole "{}" to ServiceAccount "{sa}/{ns}""#,
            vars.role_binding, vars.cluster_role
        )
    );
    assert!(may_use(&snapshot, ns, sa, &granted[1]));
    // The third spec exists but is not in the role's resourceNames.
    assert!(
        snapshot
            .gmsa_credential_spec(&vars.cred_specs[2])
            .unwrap()
            .is_some()
    );
    let decision = snapshot
        .authorize(&AccessRequest::use_gmsa(ns, sa, &vars.cred_specs[2]), None)
        .unwrap();
    assert!(!decision.allowed);
    assert_eq!(decision.reason, "");
    assert!(!may_use(&snapshot, ns, sa, "some-unknown-cred-spec"));
    // Other service accounts, and the same name in another namespace, get nothing.
    assert!(!may_use(&snapshot, ns, "default", &granted[0]));
    assert!(!may_use(&snapshot, "default", sa, &granted[0]));
}

#[test]
fn all_credspecs_role_grants_every_name() {
    let Some(shared) = shared() else { return };
    let gmsa = shared.join("conformance/gmsa");
    let vars = Vars::new("all");
    let mut files = vec![
        "service-account.yml",
        "all-credspecs-users-rbac-role.yml",
        "sa-rbac-binding.yml",
    ];
    files.extend(CREDSPECS);
    let snapshot = load(&gmsa, &files, &vars, &[]);
    let (ns, sa) = (vars.namespace.as_str(), vars.service_account.as_str());
    for name in &vars.cred_specs {
        assert!(may_use(&snapshot, ns, sa, name), "{name}");
    }
    assert!(may_use(&snapshot, ns, sa, "all-unknown-cred-spec"));
    assert!(!may_use(&snapshot, ns, "default", &vars.cred_specs[0]));
    assert!(!may_use(&snapshot, "default", sa, &vars.cred_specs[0]));
}

#[test]
fn without_the_binding_nothing_is_granted() {
    let Some(shared) = shared() else { return };
    let gmsa = shared.join("conformance/gmsa");
    let vars = Vars::new("unbound");
    let mut files = vec!["service-account.yml", "all-credspecs-users-rbac-role.yml"];
    files.extend(CREDSPECS);
    let snapshot = load(&gmsa, &files, &vars, &[]);
    let decision = snapshot
        .authorize(
            &AccessRequest::use_gmsa(&vars.namespace, &vars.service_account, &vars.cred_specs[0]),
            None,
        )
        .unwrap();
    assert!(!decision.allowed);
    assert_eq!(decision.reason, "");

    // The binding alone, its ClusterRole missing: no grant, and upstream's resolution error.
    let files = ["service-account.yml", "sa-rbac-binding.yml"];
    let snapshot = load(&gmsa, &files, &vars, &[]);
    let decision = snapshot
        .authorize(
            &AccessRequest::use_gmsa(&vars.namespace, &vars.service_account, &vars.cred_specs[0]),
            None,
        )
        .unwrap();
    assert!(!decision.allowed);
    assert_eq!(
        decision.reason,
        format!(
            r#"RBAC: clusterrole.rbac.authorization.k8s.io "{}" not found"#,
            vars.cluster_role
        )
    );
}

#[test]
fn renders_the_range_block_like_go() {
    let vars = Vars::new("t");
    let template = "rules:\n- verbs: [\"use\"]\n  resourceNames:\n{{- range $_, $csn := .CredSpecNames }}\n    - {{ $csn }}\n{{- end }}\n";
    assert_eq!(
        render(template, &vars, &vars.cred_specs[..2]),
        "rules:\n- verbs: [\"use\"]\n  resourceNames:\n    - t-cred-spec-0\n    - t-cred-spec-1\n"
    );
}
