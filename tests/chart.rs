//! The Helm chart (`charts/kadmit`), rendered by the real Helm engine: `scripts/helm/helm-render.py`
//! runs Helm's install action (helm-sdkpy) against an in-process stand-in for the API server
//! that records what Helm would create. Needs `$KADMIT_HELM_PYTHON`, a Python with helm-sdkpy
//! and PyYAML (`.ci/run` installs one); without it every test here prints SKIPPED.
//!
//! - The Deployment's pod template passes `kadmit check --level restricted`.
//! - Every webhook of both configurations excludes kube-system and the release namespace.
//! - The ClusterRole grants exactly what the caches the server starts for the rendered
//!   configuration need (`Caches::for_config`), no more: every rule is needed by an enabled
//!   policy.
//! - `kadmit certs` output plugs into the existing-secret mode: the rendered webhook's caBundle
//!   verifies the server started with that pair, at the service name the webhook names.
//! - The configuration the chart renders is one kadmit accepts; the values schema refuses typos.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use kadmit::cluster::live::Caches;
use kadmit::core::Config;
use serde_json::{Value, json};

const KADMIT: &str = env!("CARGO_BIN_EXE_kadmit");

/// The Python that can run the renderer, or `None` (and a SKIPPED line) without one.
fn helm_python() -> Option<PathBuf> {
    match std::env::var_os("KADMIT_HELM_PYTHON") {
        Some(python) => Some(PathBuf::from(python)),
        None => {
            println!(
                "SKIPPED: $KADMIT_HELM_PYTHON is not set (a Python with helm-sdkpy and PyYAML; \
                 .ci/run installs one)"
            );
            None
        }
    }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Renders the chart as release `kadmit` in `namespace` with `values` (JSON, deep-merged over
/// the chart's defaults); the documents, or Helm's error.
fn try_render(python: &Path, namespace: &str, values: &Value) -> Result<Vec<Value>, String> {
    let output = Command::new(python)
        .arg(repo().join("scripts/helm/helm-render.py"))
        .arg(repo().join("charts/kadmit"))
        .args([
            "--namespace",
            namespace,
            "--release",
            "kadmit",
            "-o",
            "json",
        ])
        .args(["--set-json", &values.to_string()])
        .output()
        .unwrap();
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&output.stdout).unwrap())
}

fn render(python: &Path, namespace: &str, values: &Value) -> Vec<Value> {
    try_render(python, namespace, values).unwrap_or_else(|e| panic!("render {values}: {e}"))
}

fn find<'a>(documents: &'a [Value], kind: &str) -> Option<&'a Value> {
    documents.iter().find(|d| d["kind"] == kind)
}

fn one<'a>(documents: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<_> = documents.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} expected");
    found[0]
}

/// The values of each certificate mode, as an operator would set them.
fn certificate_modes() -> Vec<(&'static str, Value)> {
    vec![
        ("helm", json!({})),
        (
            "cert-manager",
            json!({"certificates": {"mode": "cert-manager"}}),
        ),
        (
            "cert-manager with an issuer",
            json!({"certificates": {"mode": "cert-manager", "certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}}}),
        ),
        (
            "secret",
            json!({"certificates": {"mode": "secret", "secret": {"name": "kadmit-tls", "caBundle": "Y2E="}}}),
        ),
    ]
}

#[test]
fn the_workload_passes_restricted_in_every_mode() {
    let Some(python) = helm_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut variants = certificate_modes();
    variants.push((
        "production knobs",
        json!({"priorityClassName": "system-cluster-critical", "replicaCount": 3,
               "podLabels": {"team": "platform"}, "metrics": {"port": 9090}}),
    ));
    for (name, values) in variants {
        let documents = render(&python, "kadmit", &values);
        let deployment = one(&documents, "Deployment");
        let path = dir.path().join("deployment.json");
        std::fs::write(&path, serde_json::to_vec(deployment).unwrap()).unwrap();
        let output = Command::new(KADMIT)
            .args([
                "check",
                "--level",
                "restricted",
                "--version",
                "latest",
                "--output",
                "json",
            ])
            .arg(&path)
            .output()
            .unwrap();
        let results: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(output.status.code(), Some(0), "{name}: {results}");
        assert_eq!(results[0]["kind"], "Deployment", "{name}");
        assert_eq!(results[0]["allowed"], true, "{name}: {results}");

        // Probes on the metrics port, read-only root filesystem, spread across nodes.
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(container["readinessProbe"]["httpGet"]["port"], "metrics");
        assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
        // Secrets hygiene: never root, never more privilege.
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{pod}");
        assert_eq!(
            container["securityContext"]["allowPrivilegeEscalation"],
            false
        );
        // Endpoints drop the pod before its listener closes, within the grace period.
        let args = container["args"].to_string();
        assert!(args.contains("--shutdown-delay=5s"), "{args}");
        assert_eq!(pod["terminationGracePeriodSeconds"], 40);
        assert!(
            pod["affinity"]["podAntiAffinity"].is_object(),
            "{name}: {pod}"
        );
        let pdb = one(&documents, "PodDisruptionBudget");
        assert_eq!(pdb["spec"]["minAvailable"], 1);
    }
}

/// Every webhook of both configurations, with the configuration's kind.
fn webhooks(documents: &[Value]) -> Vec<(String, &Value)> {
    let mut all = Vec::new();
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        for configuration in documents.iter().filter(|d| d["kind"] == kind) {
            for webhook in configuration["webhooks"].as_array().unwrap() {
                all.push((kind.to_owned(), webhook));
            }
        }
    }
    all
}

/// The namespaces a webhook's namespaceSelector excludes by name.
fn excluded(webhook: &Value) -> BTreeSet<String> {
    let selector = &webhook["namespaceSelector"];
    assert!(selector.get("matchLabels").is_none(), "{selector}");
    let expressions = selector["matchExpressions"].as_array().unwrap();
    assert_eq!(expressions.len(), 1, "{selector}");
    let expression = &expressions[0];
    assert_eq!(expression["key"], "kubernetes.io/metadata.name");
    assert_eq!(expression["operator"], "NotIn");
    expression["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_webhook_excludes_kube_system_and_the_release_namespace() {
    let Some(python) = helm_python() else { return };
    for namespace in ["kadmit", "platform-admission"] {
        for (name, values) in certificate_modes() {
            let documents = render(&python, namespace, &values);
            let all = webhooks(&documents);
            let names: Vec<&str> = all
                .iter()
                .map(|(_, w)| w["name"].as_str().unwrap())
                .collect();
            assert_eq!(
                names,
                [
                    "pods.mutate.kadmit.io",
                    "pods.validate.kadmit.io",
                    "workloads.validate.kadmit.io",
                    "namespaces.validate.kadmit.io"
                ],
                "{name}"
            );
            for (kind, webhook) in &all {
                let excluded = excluded(webhook);
                assert!(excluded.contains("kube-system"), "{name} {kind}: {webhook}");
                assert!(excluded.contains(namespace), "{name} {kind}: {webhook}");
                assert_eq!(webhook["sideEffects"], "None");
                assert_eq!(webhook["admissionReviewVersions"], json!(["v1", "v1beta1"]));
                assert_eq!(webhook["timeoutSeconds"], 5);
                let service = &webhook["clientConfig"]["service"];
                assert_eq!(service["name"], "kadmit");
                assert_eq!(service["namespace"], namespace);
                assert_eq!(service["port"], 443);
                let expected = match webhook["name"].as_str().unwrap() {
                    "workloads.validate.kadmit.io" | "namespaces.validate.kadmit.io" => "Ignore",
                    _ => "Fail",
                };
                assert_eq!(webhook["failurePolicy"], expected, "{webhook}");
                if kind == "MutatingWebhookConfiguration" {
                    assert_eq!(webhook["reinvocationPolicy"], "IfNeeded");
                }
            }
        }
    }
    // Extra exclusions add to, never replace, the two that are always there.
    let documents = render(
        &python,
        "kadmit",
        &json!({"webhook": {"excludeNamespaces": ["monitoring", "kube-system"]}}),
    );
    for (_, webhook) in webhooks(&documents) {
        assert_eq!(
            excluded(webhook),
            BTreeSet::from([
                "kadmit".to_owned(),
                "kube-system".to_owned(),
                "monitoring".to_owned()
            ])
        );
    }
}

#[test]
fn certificates_reach_the_webhooks_in_each_mode() {
    let Some(python) = helm_python() else { return };
    // helm: the generated CA is the webhooks' caBundle and signed the pair in the Secret.
    let documents = render(&python, "kadmit", &json!({}));
    let secret = one(&documents, "Secret");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    let ca = secret["data"]["ca.crt"].as_str().unwrap();
    for (_, webhook) in webhooks(&documents) {
        assert_eq!(webhook["clientConfig"]["caBundle"], ca);
    }
    let volumes = &one(&documents, "Deployment")["spec"]["template"]["spec"]["volumes"];
    assert!(
        volumes
            .to_string()
            .contains("\"secretName\":\"kadmit-tls\""),
        "{volumes}"
    );
    // cert-manager: a serving Certificate for the service names, issued by a CA of the chart's
    // own (a self-signed root signing only the CA), the CA injected by annotation.
    let documents = render(
        &python,
        "kadmit",
        &json!({"certificates": {"mode": "cert-manager"}}),
    );
    let named = |kind: &str, name: &str| {
        documents
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
            .clone()
    };
    let serving = named("Certificate", "kadmit");
    assert_eq!(serving["spec"]["secretName"], "kadmit-tls");
    assert!(
        serving["spec"]["dnsNames"]
            .as_array()
            .unwrap()
            .contains(&json!("kadmit.kadmit.svc"))
    );
    assert_eq!(serving["spec"]["issuerRef"]["name"], "kadmit-ca");
    let ca = named("Certificate", "kadmit-ca");
    assert_eq!(ca["spec"]["isCA"], true);
    assert_eq!(ca["spec"]["issuerRef"]["name"], "kadmit-selfsigned");
    assert_eq!(
        named("Issuer", "kadmit-selfsigned")["spec"],
        json!({"selfSigned": {}})
    );
    assert_eq!(
        named("Issuer", "kadmit-ca")["spec"],
        json!({"ca": {"secretName": "kadmit-ca"}})
    );
    // With an issuer of the user's, only the serving Certificate.
    let theirs = render(
        &python,
        "kadmit",
        &json!({"certificates": {"mode": "cert-manager", "certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}}}),
    );
    assert!(find(&theirs, "Issuer").is_none());
    assert_eq!(
        one(&theirs, "Certificate")["spec"]["issuerRef"],
        json!({"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"})
    );
    assert!(find(&documents, "Secret").is_none());
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let configuration = one(&documents, kind);
        assert_eq!(
            configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            "kadmit/kadmit"
        );
    }
    for (_, webhook) in webhooks(&documents) {
        assert!(webhook["clientConfig"].get("caBundle").is_none());
    }
    // secret: both the name and the bundle are required, with a message saying so.
    let err = try_render(
        &python,
        "kadmit",
        &json!({"certificates": {"mode": "secret"}}),
    )
    .unwrap_err();
    assert!(
        err.contains("certificates.secret.name is required"),
        "{err}"
    );
    let err = try_render(
        &python,
        "kadmit",
        &json!({"certificates": {"mode": "secret", "secret": {"name": "x"}}}),
    )
    .unwrap_err();
    assert!(err.contains("certificates.secret.caBundle"), "{err}");
}

/// The ClusterRole's rules as (apiGroup, resource, verbs).
fn rules(documents: &[Value]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in one(documents, "ClusterRole")["rules"].as_array().unwrap() {
        let verbs: Vec<&str> = rule["verbs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for group in rule["apiGroups"].as_array().unwrap() {
            for resource in rule["resources"].as_array().unwrap() {
                out.insert((
                    group.as_str().unwrap().to_owned(),
                    resource.as_str().unwrap().to_owned(),
                    verbs.join(","),
                ));
            }
        }
    }
    out
}

/// What the server needs for the caches it starts (and the GMSA authorizer), per
/// [`Caches::for_config`] — the same function `kadmit serve` uses.
fn needed(caches: Caches) -> BTreeSet<(String, String, String)> {
    let rule = |group: &str, resource: &str, verbs: &str| {
        (group.to_owned(), resource.to_owned(), verbs.to_owned())
    };
    let mut out = BTreeSet::from([rule("", "namespaces", "list,watch")]);
    if caches.pods {
        out.insert(rule("", "pods", "list,watch"));
    }
    if caches.limit_ranges {
        out.insert(rule("", "limitranges", "list,watch"));
    }
    if caches.secrets {
        out.insert(rule("", "secrets", "list,watch"));
    }
    if caches.gmsa_credential_specs {
        out.insert(rule("windows.k8s.io", "gmsacredentialspecs", "list,watch"));
        out.insert(rule(
            "authorization.k8s.io",
            "localsubjectaccessreviews",
            "create",
        ));
    }
    out
}

#[test]
fn rbac_grants_exactly_what_the_enabled_policies_need() {
    let Some(python) = helm_python() else { return };
    let configs = [
        json!({}),
        json!({"podSecurity": {"enabled": false}}),
        json!({"gmsa": {"enabled": false}}),
        json!({"defaultResources": {"limitRanges": false}}),
        json!({"imagePullSecrets": {"rules": [{"images": ["registry.example.com/*"], "secrets": ["regcred"]}]}}),
        json!({"imagePullSecrets": {"watchSecrets": true, "rules": [{"images": ["registry.example.com/*"], "secrets": ["regcred"]}]}}),
        json!({"podSecurity": {"enabled": false}, "gmsa": {"enabled": false}, "defaultResources": {"limitRanges": false}}),
    ];
    let mut seen = BTreeSet::new();
    for config in configs {
        let documents = render(&python, "kadmit", &json!({"config": config}));
        // The rendered file is the configuration kadmit will read, and it accepts it.
        let text = one(&documents, "ConfigMap")["data"]["config.yaml"]
            .as_str()
            .unwrap()
            .to_owned();
        let parsed = Config::from_yaml(&text).unwrap_or_else(|e| panic!("{config}: {e}"));
        let granted = rules(&documents);
        assert_eq!(granted, needed(Caches::for_config(&parsed)), "{config}");
        seen.insert(granted.len());
    }
    // The configurations above reach different rule sets (the comparison is not vacuous).
    assert!(seen.len() >= 4, "{seen:?}");
}

#[test]
fn webhooks_follow_the_enabled_policies() {
    let Some(python) = helm_python() else { return };
    let names = |config: Value| {
        let documents = render(&python, "kadmit", &json!({"config": config}));
        webhooks(&documents)
            .into_iter()
            .map(|(_, w)| w["name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(json!({"podSecurity": {"workloads": "ignore"}})),
        [
            "pods.mutate.kadmit.io",
            "pods.validate.kadmit.io",
            "namespaces.validate.kadmit.io"
        ]
    );
    assert_eq!(
        names(json!({"podSecurity": {"enabled": false}, "gmsa": {"enabled": false}})),
        ["pods.mutate.kadmit.io"]
    );
    assert_eq!(
        names(
            json!({"podSecurity": {"enabled": false}, "gmsa": {"enabled": false},
                     "defaultResources": {"limitRanges": false}})
        ),
        Vec::<String>::new()
    );
}

#[test]
fn the_values_schema_refuses_typos_with_the_key() {
    let Some(python) = helm_python() else { return };
    for (values, says) in [
        (
            json!({"replicas": 3}),
            "additional properties 'replicas' not allowed",
        ),
        (json!({"webhook": {"timeoutSecond": 3}}), "at '/webhook'"),
        (
            json!({"webhook": {"timeoutSeconds": 31}}),
            "at '/webhook/timeoutSeconds'",
        ),
        (
            json!({"certificates": {"mode": "vault"}}),
            "at '/certificates/mode'",
        ),
        (
            json!({"config": {"podSecurity": {"defaults": {"enforce": "strict"}}}}),
            "at '/config/podSecurity/defaults/enforce'",
        ),
        (
            json!({"config": {"gmsa": {"enable": true}}}),
            "at '/config/gmsa'",
        ),
    ] {
        let err = try_render(&python, "kadmit", &values).unwrap_err();
        assert!(err.contains(says), "{values}: {err}");
    }
}

#[test]
fn kadmit_certs_output_plugs_into_the_existing_secret_mode() {
    let Some(python) = helm_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(KADMIT)
        .args([
            "certs",
            "--service",
            "kadmit",
            "--namespace",
            "kadmit",
            "--out-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success());
    let bundle = String::from_utf8(output.stdout).unwrap().trim().to_owned();

    // As the README says: the Secret from tls.crt/tls.key, the printed bundle as caBundle.
    let documents = render(
        &python,
        "kadmit",
        &json!({"certificates": {"mode": "secret", "secret": {"name": "kadmit-tls", "caBundle": bundle}}}),
    );
    assert!(
        find(&documents, "Secret").is_none(),
        "the chart must not create it"
    );
    let deployment = one(&documents, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "tls")
        .unwrap();
    assert_eq!(volume["secret"]["secretName"], "kadmit-tls");
    let args: Vec<&str> = pod["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    // `kubectl create secret tls` names the keys tls.crt and tls.key.
    assert!(
        args.contains(&"--tls-cert-file=/etc/kadmit/tls/tls.crt"),
        "{args:?}"
    );
    assert!(
        args.contains(&"--tls-private-key-file=/etc/kadmit/tls/tls.key"),
        "{args:?}"
    );

    // The API server's view: the webhook's caBundle, the service's DNS name. Serve the pair
    // and connect as it would.
    let all = webhooks(&documents);
    let (_, webhook) = &all[0];
    let ca = base64::engine::general_purpose::STANDARD
        .decode(webhook["clientConfig"]["caBundle"].as_str().unwrap())
        .unwrap();
    let service = &webhook["clientConfig"]["service"];
    let host = format!(
        "{}.{}.svc",
        service["name"].as_str().unwrap(),
        service["namespace"].as_str().unwrap()
    );
    assert_eq!(host, common::SERVICE_NAME);
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        one(&documents, "ConfigMap")["data"]["config.yaml"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let cluster = dir.path().join("cluster.yaml");
    std::fs::write(&cluster, "").unwrap();
    let server = common::process::spawn_serve(&[
        "--config".as_ref(),
        config.as_os_str(),
        "--cluster".as_ref(),
        cluster.as_os_str(),
        "--tls-cert-file".as_ref(),
        dir.path().join("tls.crt").as_os_str(),
        "--tls-private-key-file".as_ref(),
        dir.path().join("tls.key").as_os_str(),
    ]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let status = runtime.block_on(async {
        let client = common::client_builder(&[std::str::from_utf8(&ca).unwrap()], server.webhook)
            .build()
            .unwrap();
        let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "chart", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "default", "operation": "CREATE", "userInfo": {"username": "u"},
                "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                           "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}});
        let url = format!(
            "https://{host}:{}{}",
            server.webhook.port(),
            service["path"].as_str().unwrap()
        );
        common::post_json(&client, &url, &review).await
    });
    assert_eq!(status.0, 200, "{}", status.1);
    assert_eq!(status.1["response"]["uid"], "chart");
}

/// The dotted paths of every leaf of `values.yaml` (maps are descended, except the empty ones
/// and the free-form `resources` and `config`, which are values themselves).
fn value_paths(prefix: &str, value: &serde_yaml_ng::Value, out: &mut Vec<String>) {
    match value {
        serde_yaml_ng::Value::Mapping(map)
            if !map.is_empty() && !["resources", "config"].contains(&prefix) =>
        {
            for (key, value) in map {
                let key = key.as_str().unwrap();
                let path = if prefix.is_empty() {
                    key.to_owned()
                } else {
                    format!("{prefix}.{key}")
                };
                value_paths(&path, value, out);
            }
        }
        _ => out.push(prefix.to_owned()),
    }
}

#[test]
fn the_chart_readme_lists_every_value() {
    let chart = repo().join("charts/kadmit");
    let values: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(chart.join("values.yaml")).unwrap())
            .unwrap();
    let readme = std::fs::read_to_string(chart.join("README.md")).unwrap();
    let mut paths = Vec::new();
    value_paths("", &values, &mut paths);
    assert!(paths.len() > 30, "{paths:?}");
    let missing: Vec<&String> = paths
        .iter()
        .filter(|p| !readme.contains(&format!("| `{p}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "values missing from charts/kadmit/README.md: {missing:?}"
    );
}
