//! Properties of kadmit over generated pods and reviews (issue 9, item 2), against the real
//! HTTPS server (`tests/common`), the real `kadmit replay` and `kadmit check` binaries:
//!
//! 1. the server's `response.uid` is always the request's `uid` (unicode, quotes, control
//!    characters and all), and the answer is in the request's `apiVersion`;
//! 2. a patch (base64 JSON Patch, `patchType: JSONPatch`) always applies to the object as sent,
//!    and a second `/mutate` of the patched object (the API server's reinvocation) returns no
//!    patch; `/validate` and denials never carry a patch;
//! 3. a denial (`allowed: false`) always has a non-empty `status.message`;
//! 4. `serve`, `replay` and `check` agree: `kadmit replay --endpoint mutate|validate` gives the
//!    server's decision, code, message, warnings, audit annotations and patch, and plain
//!    `kadmit replay` (mutate, then validate on the patched object) gives what the server gives
//!    for that sequence; `kadmit check` on the pod as a manifest gives the server's Pod Security
//!    verdict, message and `level:version`, and an input error exactly where the server cannot
//!    evaluate Pod Security at all (an object that does not decode, a namespace missing from
//!    the snapshot).
//!
//! Each runs under two setups: the default configuration (no `--config`, no `--cluster`: what
//! `serve --dev` runs), and every policy on (`scripts/bench-full-policies.yaml`, with
//! `scripts/bench-cluster.yaml` followed by [`EXTRA_CLUSTER`]: namespaces with Pod Security
//! labels and a GMSA credential spec with the RBAC to use it, which the bench snapshot lacks).
//! Server, replay and check read the very same files.
//!
//! Where `check` legitimately differs from the server, the case is left out of the comparison
//! explicitly, counted and printed (see [`CheckPlan`]):
//! - UPDATE reviews: `check` knows no old object; the server skips updates Pod Security deems
//!   insignificant and applies GMSA's update rules;
//! - pods with a volume that has no source: `check` defaults it to `emptyDir`, as the API server
//!   does before admission (a review never carries one; a generated review may);
//! - the validating policies other than Pod Security (GMSA): `check` is Pod Security only, so its
//!   verdict is compared with the server's Pod Security verdict (the server's denial, when Pod
//!   Security, the first policy, made it, as `replay` names the denying policy);
//! - `check` does not read `--config`: for namespaces without an `enforce` label it is given
//!   `--level`/`--version` of the configuration's `podSecurity.defaults`, and the manifest carries
//!   the request's namespace in `metadata.namespace`, as the API server fills it in.
//!
//! A third test evaluates a fixed sample of generated reviews in-process and fails if the
//! generators stop reaching any policy's patch, any kind of denial, or either verdict of each
//! enforce level: the properties cannot pass vacuously.
//!
//! Case counts: `PROPTEST_CASES` (reviews for 1–3, batches of up to [`BATCH`] reviews for 4);
//! `PROPTEST_RNG_SEED` reruns a printed seed. No failure-persistence file is written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::hash::{BuildHasher as _, Hasher as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use common::{TestOptions, TestServer, post_json};
use kadmit::core::cluster::Snapshot;
use kadmit::core::{ClusterView, Config, Endpoint, Pipeline, Review};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config as ProptestConfig, RngSeed, TestError, TestRunner};
use serde_json::{Map, Value, json};
use tokio::runtime::Runtime;

const KADMIT: &str = env!("CARGO_BIN_EXE_kadmit");

/// Reviews per run of properties 1–3 (each sent to both endpoints of both setups).
const SERVER_CASES: u32 = 256;
/// Batches per run of property 4; each is replayed and checked by one run of each command.
const AGREEMENT_CASES: u32 = 32;
/// The most reviews in one batch.
const BATCH: usize = 8;

/// Appended to `scripts/bench-cluster.yaml` for the every-policy setup: namespaces with Pod
/// Security labels (an explicit `enforce` label each, so `check --cluster` reads the same level
/// as the server), a GMSA credential spec, service accounts allowed and not allowed to use it.
const EXTRA_CLUSTER: &str = "
---
apiVersion: v1
kind: Namespace
metadata:
  name: psa-privileged
  labels:
    pod-security.kubernetes.io/enforce: privileged
    pod-security.kubernetes.io/audit: baseline
    pod-security.kubernetes.io/warn: restricted
---
apiVersion: v1
kind: Namespace
metadata:
  name: psa-baseline
  labels:
    pod-security.kubernetes.io/enforce: baseline
    pod-security.kubernetes.io/warn: restricted
---
apiVersion: v1
kind: Namespace
metadata:
  name: psa-restricted
  labels: {pod-security.kubernetes.io/enforce: restricted}
---
apiVersion: v1
kind: Namespace
metadata:
  name: psa-old
  labels:
    pod-security.kubernetes.io/enforce: restricted
    pod-security.kubernetes.io/enforce-version: v1.22
    pod-security.kubernetes.io/audit: restricted
---
apiVersion: v1
kind: Namespace
metadata:
  name: psa-invalid
  labels:
    pod-security.kubernetes.io/enforce: strict
    pod-security.kubernetes.io/warn-version: v2
---
apiVersion: v1
kind: LimitRange
metadata: {name: limits, namespace: psa-baseline}
spec:
  limits:
  - {type: Container, max: {memory: 1Gi}, min: {cpu: 10m}}
---
apiVersion: v1
kind: Secret
metadata: {name: hub, namespace: psa-restricted}
---
apiVersion: windows.k8s.io/v1
kind: GMSACredentialSpec
metadata: {name: webapp1}
credspec:
  ActiveDirectoryConfig:
    GroupManagedServiceAccounts: [{Name: WebApp1, Scope: CONTOSO}]
  CmsPlugins: [ActiveDirectory]
  DomainJoinConfig: {DnsName: contoso.com, NetBiosName: CONTOSO}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: gmsa-user, namespace: shop}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: gmsa-user, namespace: psa-baseline}
---
kind: ClusterRole
apiVersion: rbac.authorization.k8s.io/v1
metadata: {name: webapp1-users}
rules:
- {apiGroups: [windows.k8s.io], resources: [gmsacredentialspecs], verbs: [use], resourceNames: [webapp1]}
---
kind: RoleBinding
apiVersion: rbac.authorization.k8s.io/v1
metadata: {name: webapp1, namespace: shop}
subjects: [{kind: ServiceAccount, name: gmsa-user, namespace: shop}]
roleRef: {kind: ClusterRole, name: webapp1-users, apiGroup: rbac.authorization.k8s.io}
---
kind: RoleBinding
apiVersion: rbac.authorization.k8s.io/v1
metadata: {name: webapp1, namespace: psa-baseline}
subjects: [{kind: ServiceAccount, name: gmsa-user, namespace: psa-baseline}]
roleRef: {kind: ClusterRole, name: webapp1-users, apiGroup: rbac.authorization.k8s.io}
";

/// The namespaces reviews are made in: the snapshot's (labelled and not) and ones it lacks
/// (`default` and `nowhere` are unknown to the every-policy snapshot; every namespace exists in
/// the default setup).
const NAMESPACES: &[&str] = &[
    "shop",
    "psa-privileged",
    "psa-baseline",
    "psa-restricted",
    "psa-old",
    "psa-invalid",
    "default",
    "nowhere",
];

/// The contents of `webapp1` as the mutating GMSA policy inlines them (so that some pods give
/// matching contents themselves), and contents that do not match.
const CREDSPEC_CONTENTS: &[&str] = &[
    r#"{"ActiveDirectoryConfig":{"GroupManagedServiceAccounts":[{"Name":"WebApp1","Scope":"CONTOSO"}]},"CmsPlugins":["ActiveDirectory"],"DomainJoinConfig":{"DnsName":"contoso.com","NetBiosName":"CONTOSO"}}"#,
    r#"{"CmsPlugins":["ActiveDirectory"]}"#,
    "not json",
];

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

/// One of the JSON texts, parsed.
fn json_of(texts: &'static [&'static str]) -> BoxedStrategy<Value> {
    select(texts)
        .prop_map(|text| serde_json::from_str(text).unwrap())
        .boxed()
}

fn text_of(texts: &'static [&'static str]) -> BoxedStrategy<String> {
    select(texts).prop_map(str::to_owned).boxed()
}

/// Inserts `value` at `key` when there is one.
fn put(map: &mut Map<String, Value>, key: &str, value: Option<impl Into<Value>>) {
    if let Some(value) = value {
        map.insert(key.to_owned(), value.into());
    }
}

const SECCOMP: &[&str] = &[
    r#"{"type": "RuntimeDefault"}"#,
    r#"{"type": "Unconfined"}"#,
    r#"{"type": "Localhost", "localhostProfile": "profiles/audit.json"}"#,
];
const SE_LINUX: &[&str] = &[
    r#"{"type": "container_t"}"#,
    r#"{"type": "spc_t"}"#,
    r#"{"user": "system_u"}"#,
    r#"{"role": "object_r"}"#,
    r#"{"level": "s0:c123,c456"}"#,
    "{}",
];
const APP_ARMOR: &[&str] = &[
    r#"{"type": "RuntimeDefault"}"#,
    r#"{"type": "Unconfined"}"#,
    r#"{"type": "Localhost", "localhostProfile": "k8s-apparmor-example"}"#,
];
const IMAGES: &[&str] = &[
    "nginx",
    "nginx:1.27",
    "docker.io/library/nginx:1.27",
    "docker.io/team/app",
    "registry.example.com/team/app:v1",
    "registry.example.com:5000/team/app",
    "quay.io/org/tool@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "localhost:5000/a",
    "mcr.microsoft.com/windows/servercore/iis",
    "Not A Reference",
];
const QUANTITIES: &[&str] = &[
    "100m", "2", "0.5", "128Mi", "1Gi", "3Gi", "1e3", "0", "1.5Gi", ".5", "1Ki",
];
const PROBES: &[&str] = &[
    r#"{"httpGet": {"port": 8080}}"#,
    r#"{"httpGet": {"host": "10.0.0.1", "port": 80}}"#,
    r#"{"tcpSocket": {"host": "example.com", "port": 80}}"#,
    r#"{"exec": {"command": ["true"]}}"#,
];
const LIFECYCLES: &[&str] = &[
    r#"{"postStart": {"httpGet": {"host": "127.0.0.1", "port": 80}}}"#,
    r#"{"preStop": {"exec": {"command": ["sleep", "1"]}}}"#,
];
const SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "kernel.msgmax",
    "vm.swappiness",
];
const VOLUMES: &[&str] = &[
    r#"{"hostPath": {"path": "/var/log"}}"#,
    r#"{"hostPath": {"path": "/", "type": "Directory"}}"#,
    r#"{"emptyDir": {}}"#,
    r#"{"emptyDir": {"medium": "Memory"}}"#,
    r#"{"configMap": {"name": "cm", "items": [{"key": "a", "path": "a"}]}}"#,
    r#"{"secret": {"secretName": "s"}}"#,
    r#"{"projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}"#,
    r#"{"persistentVolumeClaim": {"claimName": "data"}}"#,
    r#"{"downwardAPI": {"items": []}}"#,
    r#"{"nfs": {"server": "nfs.example.com", "path": "/"}}"#,
    "{}",
];
const LABEL_KEYS: &[&str] = &[
    "app",
    "app.kubernetes.io/name",
    "a/b",
    "x~y",
    "~1",
    "a~0b/c~1d",
];
const ANNOTATION_KEYS: &[&str] = &[
    "a/b",
    "x~y",
    "~0~1/",
    "note",
    "kubernetes.io/limit-ranger",
    "kadmit.io/defaulted-resources",
    "container.apparmor.security.beta.kubernetes.io/app-0",
    "container.apparmor.security.beta.kubernetes.io/init-0",
    "seccomp.security.alpha.kubernetes.io/pod",
    "container.seccomp.security.alpha.kubernetes.io/app-0",
];
const META_VALUES: &[&str] = &[
    "",
    "x",
    "runtime/default",
    "unconfined",
    "localhost/profile",
    "docker/default",
    "a/b~c",
    "é ✓ \"q\" \\",
];

fn windows_options() -> BoxedStrategy<Value> {
    (
        option::of(text_of(&["webapp1", "missing", ""])),
        option::weighted(0.2, select(CREDSPEC_CONTENTS)),
        option::weighted(0.3, any::<bool>()),
        option::weighted(0.2, Just("ContainerUser")),
    )
        .prop_map(|(name, contents, host_process, user)| {
            let mut map = Map::new();
            put(&mut map, "gmsaCredentialSpecName", name);
            put(&mut map, "gmsaCredentialSpec", contents);
            put(&mut map, "hostProcess", host_process);
            put(&mut map, "runAsUserName", user);
            Value::Object(map)
        })
        .boxed()
}

fn capabilities() -> BoxedStrategy<Value> {
    (
        option::of(vec(
            select(&["NET_RAW", "SYS_ADMIN", "NET_BIND_SERVICE", "CHOWN", "ALL"][..]),
            0..3,
        )),
        option::of(vec(select(&["ALL", "NET_RAW", "all"][..]), 0..3)),
    )
        .prop_map(|(add, drop)| {
            let mut map = Map::new();
            put(&mut map, "add", add);
            put(&mut map, "drop", drop);
            Value::Object(map)
        })
        .boxed()
}

fn container_security_context() -> BoxedStrategy<Option<Value>> {
    option::weighted(
        0.7,
        (
            option::of(any::<bool>()),
            option::of(any::<bool>()),
            option::weighted(0.3, any::<bool>()),
            option::weighted(0.3, select(&[0i64, 1000][..])),
            option::of(capabilities()),
            option::weighted(0.3, json_of(SECCOMP)),
            option::weighted(0.2, json_of(SE_LINUX)),
            option::weighted(0.2, select(&["Default", "Unmasked"][..])),
            option::weighted(0.2, json_of(APP_ARMOR)),
            option::weighted(0.2, windows_options()),
        ),
    )
    .prop_map(|context| {
        context.map(
            |(
                privileged,
                escalation,
                non_root,
                user,
                caps,
                seccomp,
                se_linux,
                proc_mount,
                app_armor,
                windows,
            )| {
                let mut map = Map::new();
                put(&mut map, "privileged", privileged);
                put(&mut map, "allowPrivilegeEscalation", escalation);
                put(&mut map, "runAsNonRoot", non_root);
                put(&mut map, "runAsUser", user);
                put(&mut map, "capabilities", caps);
                put(&mut map, "seccompProfile", seccomp);
                put(&mut map, "seLinuxOptions", se_linux);
                put(&mut map, "procMount", proc_mount);
                put(&mut map, "appArmorProfile", app_armor);
                put(&mut map, "windowsOptions", windows);
                Value::Object(map)
            },
        )
    })
    .boxed()
}

fn resource_list() -> BoxedStrategy<Option<Value>> {
    option::of(btree_map(
        // Extended resources' names need RFC 6901 escaping in patch paths.
        text_of(&[
            "cpu",
            "memory",
            "ephemeral-storage",
            "nvidia.com/gpu",
            "hugepages-2Mi",
            "example.com/a~b",
        ]),
        select(QUANTITIES).prop_map(Value::from),
        0..3,
    ))
    .prop_map(|list| list.map(|list| Value::Object(list.into_iter().collect())))
    .boxed()
}

/// `resources` absent, empty, or with requests and/or limits, possibly partial.
fn resources() -> BoxedStrategy<Option<Value>> {
    option::of((resource_list(), resource_list()))
        .prop_map(|resources| {
            resources.map(|(requests, limits)| {
                let mut map = Map::new();
                put(&mut map, "requests", requests);
                put(&mut map, "limits", limits);
                Value::Object(map)
            })
        })
        .boxed()
}

/// A container without its name (given by its place in the pod).
fn container() -> BoxedStrategy<Value> {
    (
        select(IMAGES),
        resources(),
        container_security_context(),
        option::weighted(
            0.3,
            vec(
                (
                    select(&[80u16, 8080][..]),
                    option::of(select(&[0u16, 80, 8080][..])),
                ),
                1..3,
            ),
        ),
        option::weighted(0.2, json_of(PROBES)),
        option::weighted(0.1, json_of(LIFECYCLES)),
        any::<bool>(),
    )
        .prop_map(
            |(image, resources, security_context, ports, probe, lifecycle, extras)| {
                let mut map = Map::new();
                map.insert("image".to_owned(), json!(image));
                put(&mut map, "resources", resources);
                put(&mut map, "securityContext", security_context);
                put(
                    &mut map,
                    "ports",
                    ports.map(|ports| {
                        ports
                            .into_iter()
                            .map(|(port, host)| {
                                let mut port = json!({"containerPort": port, "protocol": "TCP"});
                                if let Some(host) = host {
                                    port["hostPort"] = json!(host);
                                }
                                port
                            })
                            .collect::<Vec<_>>()
                    }),
                );
                put(&mut map, "livenessProbe", probe);
                put(&mut map, "lifecycle", lifecycle);
                if extras {
                    // Members no policy reads (the server skips them while decoding), and one
                    // no Kubernetes version has.
                    map.insert("env".to_owned(), json!([{"name": "A", "value": "1"}]));
                    map.insert(
                        "volumeMounts".to_owned(),
                        json!([{"name": "vol-0", "mountPath": "/data"}]),
                    );
                    map.insert("x-kadmit-unknown".to_owned(), json!({"kept": [1, 2]}));
                }
                Value::Object(map)
            },
        )
        .boxed()
}

fn pod_security_context() -> BoxedStrategy<Option<Value>> {
    option::weighted(
        0.7,
        (
            option::of(any::<bool>()),
            option::weighted(0.3, select(&[0i64, 1000][..])),
            option::of(json_of(SECCOMP)),
            option::weighted(0.2, json_of(SE_LINUX)),
            option::weighted(0.3, vec(select(SYSCTLS), 1..3)),
            option::weighted(0.3, windows_options()),
            option::weighted(0.2, json_of(APP_ARMOR)),
            option::weighted(0.2, Just(2000)),
        ),
    )
    .prop_map(|context| {
        context.map(
            |(non_root, user, seccomp, se_linux, sysctls, windows, app_armor, fs_group)| {
                let mut map = Map::new();
                put(&mut map, "runAsNonRoot", non_root);
                put(&mut map, "runAsUser", user);
                put(&mut map, "seccompProfile", seccomp);
                put(&mut map, "seLinuxOptions", se_linux);
                put(
                    &mut map,
                    "sysctls",
                    sysctls.map(|names| {
                        names
                            .into_iter()
                            .map(|name| json!({"name": name, "value": "1"}))
                            .collect::<Vec<_>>()
                    }),
                );
                put(&mut map, "windowsOptions", windows);
                put(&mut map, "appArmorProfile", app_armor);
                put(&mut map, "fsGroup", fs_group);
                Value::Object(map)
            },
        )
    })
    .boxed()
}

fn string_map(keys: &'static [&'static str]) -> BoxedStrategy<Value> {
    btree_map(text_of(keys), text_of(META_VALUES), 0..4)
        .prop_map(|map| json!(map))
        .boxed()
}

/// What the pod's metadata looks like.
#[derive(Debug, Clone)]
enum Metadata {
    /// No `metadata` member at all.
    Absent,
    /// `metadata: {}`.
    Empty,
    /// `metadata: null`.
    Null,
    /// Members, and whether `namespace` is set (to the request's, as the API server does).
    Some(Map<String, Value>, bool),
}

fn metadata() -> BoxedStrategy<Metadata> {
    prop_oneof![
        1 => Just(Metadata::Absent),
        1 => Just(Metadata::Empty),
        1 => Just(Metadata::Null),
        8 => (
            option::weighted(0.8, text_of(&["web", "web-1", "p", "x.y-z"])),
            option::weighted(0.1, Just("web-")),
            option::of(string_map(LABEL_KEYS)),
            option::of(string_map(ANNOTATION_KEYS)),
            proptest::bool::weighted(0.85),
        )
            .prop_map(|(name, generate_name, labels, annotations, namespaced)| {
                let mut map = Map::new();
                put(&mut map, "name", name);
                put(&mut map, "generateName", generate_name);
                put(&mut map, "labels", labels);
                put(&mut map, "annotations", annotations);
                Metadata::Some(map, namespaced)
            }),
    ]
    .boxed()
}

/// A pod as generated, before it is placed in a namespace.
#[derive(Debug, Clone)]
struct PodParts {
    metadata: Metadata,
    spec: Value,
}

/// A pull secret entry without a name: `{}`.
const NAMELESS: &str = "(no name)";

/// The shape of the spec.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Normal,
    /// `containers: []`.
    NoContainers,
    /// No `spec` member.
    NoSpec,
}

/// Number of the single violations [`harden`] may leave in a hardened pod.
const VIOLATIONS: usize = 14;

/// Pod specs: random everything, or (a third of them) hardened to pass `restricted` but for at
/// most one violation, so that the allowed side of each level is reached as often as the
/// denied side.
fn pod() -> BoxedStrategy<PodParts> {
    let containers = (
        vec(container(), 1..4),
        vec(container(), 0..3),
        vec(container(), 0..2),
    );
    let host = (
        option::weighted(0.3, any::<bool>()),
        option::weighted(0.2, any::<bool>()),
        option::weighted(0.2, any::<bool>()),
    );
    let extras = (
        option::weighted(
            0.3,
            vec(text_of(&["hub", "regcred", "mine", "", NAMELESS]), 0..3),
        ),
        option::weighted(0.2, text_of(&["linux", "windows"])),
        option::weighted(0.4, text_of(&["default", "gmsa-user", "builder"])),
        option::weighted(0.1, Just("web-host")),
        any::<bool>(),
        proptest::bool::weighted(0.04),
        // A pod that uses the GMSA spec with a service account allowed to, contents or not.
        option::weighted(0.15, option::of(select(CREDSPEC_CONTENTS))),
        // Rarely, no containers or no spec at all.
        prop_oneof![40 => Just(Shape::Normal), 1 => Just(Shape::NoContainers), 1 => Just(Shape::NoSpec)],
    );
    let hardening = prop_oneof![
        2 => Just(None),
        1 => option::of(0..VIOLATIONS).prop_map(Some),
    ];
    (
        containers,
        pod_security_context(),
        host,
        vec(select(VOLUMES), 0..4),
        extras,
        metadata(),
        hardening,
        option::weighted(0.1, vec(select(NULLABLE), 1..3)),
    )
        .prop_map(
            |(
                (containers, inits, ephemerals),
                security_context,
                (host_network, host_pid, host_ipc),
                volumes,
                (pull_secrets, os, service_account, hostname, unknown, broken, gmsa, shape),
                metadata,
                hardening,
                nulls,
            )| {
                let named = |prefix: &str, list: Vec<Value>| {
                    list.into_iter()
                        .enumerate()
                        .map(|(i, mut c)| {
                            c["name"] = json!(format!("{prefix}-{i}"));
                            c
                        })
                        .collect::<Vec<_>>()
                };
                let mut spec = Map::new();
                spec.insert("containers".to_owned(), json!(named("app", containers)));
                if !inits.is_empty() {
                    spec.insert("initContainers".to_owned(), json!(named("init", inits)));
                }
                if !ephemerals.is_empty() {
                    spec.insert(
                        "ephemeralContainers".to_owned(),
                        json!(named("debug", ephemerals)),
                    );
                }
                put(&mut spec, "securityContext", security_context);
                put(&mut spec, "hostNetwork", host_network);
                put(&mut spec, "hostPID", host_pid);
                put(&mut spec, "hostIPC", host_ipc);
                if !volumes.is_empty() {
                    let volumes: Vec<Value> = volumes
                        .iter()
                        .enumerate()
                        .map(|(i, text)| {
                            let mut volume: Value = serde_json::from_str(text).unwrap();
                            volume["name"] = json!(format!("vol-{i}"));
                            volume
                        })
                        .collect();
                    spec.insert("volumes".to_owned(), json!(volumes));
                }
                put(
                    &mut spec,
                    "imagePullSecrets",
                    pull_secrets.map(|names| {
                        names
                            .into_iter()
                            .map(|name| {
                                if name == NAMELESS {
                                    json!({})
                                } else {
                                    json!({"name": name})
                                }
                            })
                            .collect::<Vec<_>>()
                    }),
                );
                put(&mut spec, "os", os.map(|name| json!({"name": name})));
                put(&mut spec, "serviceAccountName", service_account);
                put(&mut spec, "hostname", hostname);
                if unknown {
                    spec.insert("x-kadmit-unknown".to_owned(), json!("kept"));
                }
                if let Some(contents) = gmsa {
                    spec.insert("serviceAccountName".to_owned(), json!("gmsa-user"));
                    let context = spec.entry("securityContext").or_insert_with(|| json!({}));
                    let mut windows = json!({"gmsaCredentialSpecName": "webapp1"});
                    put(
                        windows.as_object_mut().unwrap(),
                        "gmsaCredentialSpec",
                        contents,
                    );
                    context["windowsOptions"] = windows;
                }
                let mut parts = PodParts {
                    metadata,
                    spec: Value::Object(spec),
                };
                if let Some(violation) = hardening {
                    harden(&mut parts, violation);
                }
                for pointer in nulls.into_iter().flatten() {
                    nullify(&mut parts, pointer);
                }
                if broken {
                    // Not a Pod: the server answers 400, check reports an input error.
                    parts.spec["hostNetwork"] = json!("yes");
                }
                match shape {
                    Shape::Normal => {}
                    Shape::NoContainers => parts.spec["containers"] = json!([]),
                    Shape::NoSpec => parts.spec = Value::Null,
                }
                parts
            },
        )
        .boxed()
}

/// Makes the pod pass `restricted` (keeping images, resources, names, metadata and the GMSA
/// settings), then adds the one violation `violation` names, if any.
fn harden(parts: &mut PodParts, violation: Option<usize>) {
    let spec = parts.spec.as_object_mut().unwrap();
    for key in ["hostNetwork", "hostPID", "hostIPC"] {
        spec.remove(key);
    }
    let windows = spec
        .get("securityContext")
        .and_then(|sc| sc.get("windowsOptions"))
        .cloned();
    let mut pod_sc = json!({"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}});
    if let Some(Value::Object(mut windows)) = windows {
        windows.remove("hostProcess");
        pod_sc["windowsOptions"] = Value::Object(windows);
    }
    spec.insert("securityContext".to_owned(), pod_sc);
    if let Some(Value::Array(volumes)) = spec.get_mut("volumes") {
        volumes.retain(|v| v.get("hostPath").is_none() && v.get("nfs").is_none());
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for container in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let container = container.as_object_mut().unwrap();
            container.insert(
                "securityContext".to_owned(),
                json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}),
            );
            container.remove("ports");
            container.remove("livenessProbe");
            container.remove("lifecycle");
        }
    }
    if let Metadata::Some(map, _) = &mut parts.metadata
        && let Some(Value::Object(annotations)) = map.get_mut("annotations")
    {
        annotations.retain(|key, _| !key.contains("apparmor") && !key.contains("seccomp"));
    }
    let container = &mut parts.spec["containers"][0];
    match violation {
        None => {}
        Some(0) => container["securityContext"]["privileged"] = json!(true),
        Some(1) => parts.spec["hostNetwork"] = json!(true),
        Some(2) => container["securityContext"]["runAsUser"] = json!(0),
        Some(3) => container["securityContext"]["capabilities"]["add"] = json!(["SYS_ADMIN"]),
        Some(4) => {
            container["securityContext"]["seccompProfile"] = json!({"type": "Unconfined"});
        }
        Some(5) => {
            let volumes = parts.spec.as_object_mut().unwrap();
            let list = volumes.entry("volumes").or_insert_with(|| json!([]));
            list.as_array_mut()
                .unwrap()
                .push(json!({"name": "host", "hostPath": {"path": "/etc"}}));
        }
        Some(6) => container["ports"] = json!([{"containerPort": 80, "hostPort": 80}]),
        Some(7) => container["securityContext"]["allowPrivilegeEscalation"] = json!(true),
        Some(8) => container["securityContext"]["procMount"] = json!("Unmasked"),
        Some(9) => {
            parts.spec["securityContext"]["sysctls"] =
                json!([{"name": "kernel.msgmax", "value": "1"}]);
        }
        Some(10) => {
            container["securityContext"]["seLinuxOptions"] = json!({"type": "spc_t"});
        }
        Some(11) => {
            container["securityContext"]["appArmorProfile"] = json!({"type": "Unconfined"});
        }
        Some(12) => {
            parts.spec["securityContext"]["windowsOptions"]["hostProcess"] = json!(true);
        }
        Some(_) => container["securityContext"]["capabilities"] = json!({"drop": ["NET_RAW"]}),
    }
}

/// Optional members that may be sent as an explicit `null`, which decodes as absent: patches
/// computed from the typed pod must still apply to the object with its nulls.
const NULLABLE: &[&str] = &[
    "/metadata/annotations",
    "/metadata/labels",
    "/spec/securityContext",
    "/spec/securityContext/seccompProfile",
    "/spec/imagePullSecrets",
    "/spec/initContainers",
    "/spec/volumes",
    "/spec/containers/0/securityContext",
    "/spec/containers/0/securityContext/capabilities",
    "/spec/containers/0/securityContext/capabilities/drop",
    "/spec/containers/0/securityContext/allowPrivilegeEscalation",
    "/spec/containers/0/resources",
    "/spec/containers/0/resources/limits",
    "/spec/containers/0/resources/requests",
];

/// Sets the member at `pointer` to `null`, when its parent object exists.
fn nullify(parts: &mut PodParts, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    if let Some(rest) = parent.strip_prefix("/metadata") {
        if let Metadata::Some(map, _) = &mut parts.metadata {
            assert!(rest.is_empty());
            map.insert(key.to_owned(), Value::Null);
        }
        return;
    }
    let parent = parent.strip_prefix("/spec").unwrap();
    if let Some(Value::Object(parent)) = parts.spec.pointer_mut(parent) {
        parent.insert(key.to_owned(), Value::Null);
    }
}

/// The pod in `namespace`: `metadata.namespace` set as the API server sets it, unless the
/// metadata is absent, empty or generated without it.
fn place(parts: &PodParts, namespace: &str) -> Value {
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod"});
    if !parts.spec.is_null() {
        pod["spec"] = parts.spec.clone();
    }
    match &parts.metadata {
        Metadata::Absent => {}
        Metadata::Empty => pod["metadata"] = json!({}),
        Metadata::Null => pod["metadata"] = Value::Null,
        Metadata::Some(map, namespaced) => {
            let mut map = map.clone();
            if *namespaced {
                map.insert("namespace".to_owned(), json!(namespace));
            }
            pod["metadata"] = Value::Object(map);
        }
    }
    pod
}

/// What an UPDATE's old object is.
#[derive(Debug, Clone)]
enum Old {
    /// The same pod.
    Same,
    /// The same pod with other labels (an insignificant update).
    Relabelled,
    /// The same pod with another image in its first container (a significant update).
    NewImage,
    /// The same pod without its ephemeral containers (then added by `kubectl debug`).
    WithoutEphemerals,
    /// Another pod altogether.
    Other(PodParts),
}

fn uid() -> BoxedStrategy<String> {
    prop_oneof![
        "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
        "\\PC{1,12}",
        "[\"\\\\'<>&{}a-z\u{e9}\u{1F600}\u{202E}\u{FEFF}\u{85} ]{1,8}",
        "[\\x00-\\x1f\"\\\\]{1,4}",
    ]
    .boxed()
}

/// One AdmissionReview, as the API server would send it.
#[derive(Clone)]
struct Case {
    review: Value,
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", serde_json::to_string_pretty(&self.review).unwrap())
    }
}

impl Case {
    fn request(&self) -> &Value {
        &self.review["request"]
    }

    fn uid(&self) -> &str {
        self.request()["uid"].as_str().unwrap()
    }

    fn namespace(&self) -> &str {
        self.request()["namespace"].as_str().unwrap()
    }

    fn is_create(&self) -> bool {
        self.request()["operation"] == "CREATE"
    }

    fn object(&self) -> &Value {
        &self.request()["object"]
    }

    /// The review with `object` in place of the object sent.
    fn with_object(&self, object: Value) -> Value {
        let mut review = self.review.clone();
        review["request"]["object"] = object;
        review
    }
}

fn case() -> BoxedStrategy<Case> {
    (
        select(&["admission.k8s.io/v1", "admission.k8s.io/v1beta1"][..]),
        uid(),
        select(NAMESPACES),
        pod(),
        prop_oneof![
            7 => Just(None),
            1 => Just(Some(Old::Same)),
            1 => Just(Some(Old::Relabelled)),
            1 => Just(Some(Old::NewImage)),
            1 => Just(Some(Old::WithoutEphemerals)),
            1 => pod().prop_map(|parts| Some(Old::Other(parts))),
        ],
        any::<bool>(),
        option::weighted(0.3, text_of(&["ephemeralcontainers", "status", "resize"])),
    )
        .prop_map(|(api_version, uid, namespace, parts, old, dry_run, subresource)| {
            let object = place(&parts, namespace);
            let old_object = old.map(|old| match old {
                Old::Same => object.clone(),
                Old::Relabelled => {
                    let mut old = object.clone();
                    old["metadata"]["labels"] = json!({"release": "previous"});
                    old
                }
                Old::NewImage => {
                    let mut old = object.clone();
                    if let Some(Value::Object(first)) = old.pointer_mut("/spec/containers/0") {
                        first.insert("image".to_owned(), json!("busybox:previous"));
                    }
                    old
                }
                Old::WithoutEphemerals => {
                    let mut old = object.clone();
                    if let Some(Value::Object(spec)) = old.get_mut("spec") {
                        spec.remove("ephemeralContainers");
                    }
                    old
                }
                Old::Other(parts) => place(&parts, namespace),
            });
            let operation = if old_object.is_some() {
                "UPDATE"
            } else {
                "CREATE"
            };
            let mut request = json!({
                "uid": uid,
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
                "requestResource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": namespace,
                "operation": operation,
                "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
                "object": object,
                "dryRun": dry_run,
                "options": {
                    "apiVersion": "meta.k8s.io/v1",
                    "kind": if old_object.is_some() { "UpdateOptions" } else { "CreateOptions" },
                },
            });
            if let Some(name) = object.pointer("/metadata/name") {
                request["name"] = name.clone();
            }
            if let Some(old) = old_object {
                request["oldObject"] = old;
                put(request.as_object_mut().unwrap(), "subResource", subresource);
            }
            Case {
                review: json!({"apiVersion": api_version, "kind": "AdmissionReview", "request": request}),
            }
        })
        .boxed()
}

/// Several reviews, replayed and checked by one run of each command.
#[derive(Clone)]
struct Batch(Vec<Case>);

impl fmt::Debug for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, case) in self.0.iter().enumerate() {
            writeln!(f, "review {i:03}.json: {case:?}")?;
        }
        Ok(())
    }
}

fn batch() -> BoxedStrategy<Batch> {
    vec(case(), 1..=BATCH).prop_map(Batch).boxed()
}

// ---------------------------------------------------------------------------------------------
// Setups
// ---------------------------------------------------------------------------------------------

/// One configuration and cluster, served by one server and given to replay and check.
struct Setup {
    name: &'static str,
    server: TestServer,
    client: reqwest::Client,
    /// `--config`/`--cluster` for `kadmit replay`, exactly the files the server was given.
    replay_args: Vec<String>,
    /// The cluster file, for `kadmit check --cluster`.
    cluster_file: Option<PathBuf>,
    /// The snapshot, to tell which namespaces have an `enforce` label.
    cluster: Option<Snapshot>,
    /// `--level`, `--version` of the configuration's enforce default.
    default_level: (String, String),
    /// Keeps the cluster file.
    _dir: tempfile::TempDir,
}

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

impl Setup {
    async fn default_configuration() -> Setup {
        Setup::start("default configuration", None, None).await
    }

    async fn every_policy() -> Setup {
        let cluster = std::fs::read_to_string(repo_file("scripts/bench-cluster.yaml")).unwrap()
            + EXTRA_CLUSTER;
        Setup::start(
            "every policy",
            Some(repo_file("scripts/bench-full-policies.yaml")),
            Some(cluster),
        )
        .await
    }

    async fn start(
        name: &'static str,
        config_file: Option<PathBuf>,
        cluster_text: Option<String>,
    ) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let config = match &config_file {
            Some(path) => Config::from_yaml(&std::fs::read_to_string(path).unwrap()).unwrap(),
            None => Config::default(),
        };
        let mut replay_args = Vec::new();
        if let Some(path) = &config_file {
            replay_args.extend(["--config".to_owned(), path.display().to_string()]);
        }
        let (cluster_file, cluster) = match &cluster_text {
            Some(text) => {
                let path = dir.path().join("cluster.yaml");
                std::fs::write(&path, text).unwrap();
                replay_args.extend(["--cluster".to_owned(), path.display().to_string()]);
                (Some(path), Some(Snapshot::parse(text).unwrap()))
            }
            None => (None, None),
        };
        // What `serve` builds from the same flags: the snapshot file, or `--dev`'s cluster.
        let server_cluster: Arc<dyn ClusterView> = match &cluster_text {
            Some(text) => Arc::new(Snapshot::parse(text).unwrap()),
            None => Arc::new(Snapshot::dev()),
        };
        let server = TestServer::start(TestOptions {
            config: config.clone(),
            cluster: server_cluster,
            ..TestOptions::default()
        })
        .await;
        let client = server.client();
        let defaults = &config.pod_security.defaults;
        Setup {
            name,
            client,
            server,
            replay_args,
            cluster_file,
            cluster,
            default_level: (
                defaults.enforce.as_str().to_owned(),
                defaults.enforce_version.to_string(),
            ),
            _dir: dir,
        }
    }

    async fn post(&self, path: &str, review: &Value) -> (u16, Value) {
        post_json(&self.client, &self.server.url(path), review).await
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn start_setups(runtime: &Runtime) -> Vec<Setup> {
    runtime.block_on(async {
        vec![
            Setup::default_configuration().await,
            Setup::every_policy().await,
        ]
    })
}

fn stop_setups(runtime: &Runtime, setups: Vec<Setup>) {
    runtime.block_on(async {
        for setup in setups {
            setup.server.stop().await;
        }
    });
}

/// A runner with `PROPTEST_CASES` cases (else `default_cases`), the seed of
/// `PROPTEST_RNG_SEED` (else a random one, printed), and no failure-persistence file.
fn runner(test: &str, default_cases: u32) -> (TestRunner, u64) {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    let seed = std::env::var("PROPTEST_RNG_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        });
    println!("{test}: {cases} cases, seed {seed} (PROPTEST_RNG_SEED={seed} reruns them)");
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        max_shrink_iters: 1024,
        ..ProptestConfig::default()
    };
    (TestRunner::new(config), seed)
}

/// Panics with proptest's report of the minimal failing input and the seed.
fn report<T: fmt::Debug>(test: &str, seed: u64, result: Result<(), TestError<T>>) {
    if let Err(error) = result {
        panic!("{test}: {error}\nseed: {seed} (rerun with PROPTEST_RNG_SEED={seed})");
    }
}

// ---------------------------------------------------------------------------------------------
// Properties 1–3: the server's answers
// ---------------------------------------------------------------------------------------------

/// The decoded JSON Patch of a response, checking the wire form the API server relies on:
/// `patchType: JSONPatch` exactly when there is a patch, base64 of a non-empty JSON array.
fn patch_of(response: &Value) -> Result<Option<Vec<Value>>, TestCaseError> {
    let Some(patch) = response.get("patch") else {
        prop_assert!(
            response.get("patchType").is_none(),
            "patchType without a patch"
        );
        return Ok(None);
    };
    prop_assert_eq!(&response["patchType"], "JSONPatch");
    let encoded = patch.as_str();
    prop_assert!(encoded.is_some(), "the patch is not a string: {}", patch);
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded.unwrap());
    prop_assert!(bytes.is_ok(), "the patch is not base64: {:?}", bytes);
    let ops: Result<Vec<Value>, _> = serde_json::from_slice(&bytes.unwrap());
    prop_assert!(ops.is_ok(), "the patch is not a JSON array: {:?}", ops);
    let ops = ops.unwrap();
    prop_assert!(!ops.is_empty(), "an empty patch is sent");
    Ok(Some(ops))
}

/// `ops` applied to `object` with the json-patch crate, as the API server applies them.
fn apply(object: &Value, ops: &[Value]) -> Result<Value, String> {
    let patch: json_patch::Patch =
        serde_json::from_value(Value::Array(ops.to_vec())).map_err(|e| e.to_string())?;
    let mut patched = object.clone();
    json_patch::patch(&mut patched, &patch).map_err(|e| e.to_string())?;
    Ok(patched)
}

/// Properties 1–3 for one review at one endpoint of one setup.
fn server_properties(
    runtime: &Runtime,
    setup: &Setup,
    path: &str,
    case: &Case,
    tally: &Tally,
) -> Result<(), TestCaseError> {
    let at = format!("{} {path}", setup.name);
    let (status, answer) = runtime.block_on(setup.post(path, &case.review));
    prop_assert_eq!(status, 200, "{}: {}", at, answer);
    prop_assert_eq!(&answer["apiVersion"], &case.review["apiVersion"], "{}", at);
    let response = &answer["response"];
    // 1. The uid.
    prop_assert_eq!(
        response["uid"].as_str(),
        Some(case.uid()),
        "{}: uid changed",
        at
    );
    let allowed = response["allowed"].as_bool();
    prop_assert!(allowed.is_some(), "{}: no decision: {}", at, response);
    let patch = patch_of(response).map_err(|e| TestCaseError::fail(format!("{at}: {e}")))?;
    if allowed == Some(false) {
        // 3. A denial says why.
        let message = response["status"]["message"].as_str().unwrap_or("");
        prop_assert!(
            !message.trim().is_empty(),
            "{}: denied without a message: {}",
            at,
            response
        );
        prop_assert!(patch.is_none(), "{}: a denial carries a patch", at);
    }
    if path == "/validate" {
        prop_assert!(patch.is_none(), "{}: validation patched: {}", at, response);
    }
    tally.add(format!(
        "{at}: {}",
        match (allowed, &patch) {
            (Some(false), _) => "denied with a message",
            (_, Some(_)) => "allowed with a patch that applies, none on the second pass",
            _ => "allowed without a patch",
        }
    ));
    // 2. The patch applies, and is not asked for again.
    if let Some(ops) = patch {
        let patched = apply(case.object(), &ops);
        prop_assert!(
            patched.is_ok(),
            "{}: the patch {} does not apply: {:?}",
            at,
            Value::Array(ops.clone()),
            patched
        );
        let patched = patched.unwrap();
        let (status, again) = runtime.block_on(setup.post("/mutate", &case.with_object(patched)));
        prop_assert_eq!(status, 200, "{}: second pass: {}", at, again);
        prop_assert_eq!(again["response"]["uid"].as_str(), Some(case.uid()));
        let second = patch_of(&again["response"])
            .map_err(|e| TestCaseError::fail(format!("{at}: second pass: {e}")))?;
        prop_assert!(
            second.is_none(),
            "{}: the second pass patches again: {:?} after {}",
            at,
            second,
            Value::Array(ops)
        );
    }
    Ok(())
}

#[test]
fn the_server_keeps_the_uid_sends_patches_that_apply_and_explains_denials() {
    const TEST: &str = "the_server_keeps_the_uid_sends_patches_that_apply_and_explains_denials";
    let runtime = runtime();
    let setups = start_setups(&runtime);
    let (mut runner, seed) = runner(TEST, SERVER_CASES);
    let tally = Tally::default();
    let started = std::time::Instant::now();
    let result = runner.run(&case(), |case| {
        for setup in &setups {
            for path in ["/mutate", "/validate"] {
                server_properties(&runtime, setup, path, &case, &tally)?;
            }
        }
        Ok(())
    });
    println!("{TEST}: {:.1?}\n{tally}", started.elapsed());
    stop_setups(&runtime, setups);
    report(TEST, seed, result);
}

// ---------------------------------------------------------------------------------------------
// Property 4: serve, replay and check agree
// ---------------------------------------------------------------------------------------------

/// The parts of an answer replay reports, from the server's AdmissionReview `response`.
fn served_view(response: &Value) -> Result<Value, TestCaseError> {
    let patch = patch_of(response)?.unwrap_or_default();
    Ok(json!({
        "allowed": response["allowed"],
        "code": response["status"].get("code").cloned().unwrap_or(Value::Null),
        "message": response["status"].get("message").cloned().unwrap_or(Value::Null),
        "warnings": response.get("warnings").cloned().unwrap_or(json!([])),
        "auditAnnotations": response.get("auditAnnotations").cloned().unwrap_or(json!({})),
        "patch": patch,
    }))
}

/// The same parts of an element of `kadmit replay --output json`.
fn replayed_view(entry: &Value) -> Value {
    json!({
        "allowed": entry["allowed"],
        "code": entry["code"],
        "message": entry["message"],
        "warnings": entry["warnings"],
        "auditAnnotations": entry["auditAnnotations"],
        "patch": entry["patch"],
    })
}

/// Decision, code, message and patch only: what the API server makes of mutate-then-validate
/// (warnings and annotations of the two calls are merged, so they are compared per endpoint).
fn decision_view(view: &Value) -> Value {
    json!({
        "allowed": view["allowed"],
        "code": view["code"],
        "message": view["message"],
        "patch": view["patch"],
    })
}

/// What the server answers one review with, on each route.
struct Served {
    mutate: Value,
    validate: Value,
    /// `/mutate`, then `/validate` of the patched object, combined as the API server does: a
    /// mutating denial ends the request; else validation's decision with mutation's patch.
    both: Value,
}

fn serve_case(runtime: &Runtime, setup: &Setup, case: &Case) -> Result<Served, TestCaseError> {
    runtime.block_on(async {
        let (status, mutate) = setup.post("/mutate", &case.review).await;
        prop_assert_eq!(status, 200);
        let (status, validate) = setup.post("/validate", &case.review).await;
        prop_assert_eq!(status, 200);
        let mutate = served_view(&mutate["response"])?;
        let validate = served_view(&validate["response"])?;
        let both = if mutate["allowed"] == false {
            decision_view(&mutate)
        } else {
            let ops = mutate["patch"].as_array().unwrap();
            let after = if ops.is_empty() {
                validate.clone()
            } else {
                let patched = apply(case.object(), ops).map_err(TestCaseError::fail)?;
                let (status, answer) = setup.post("/validate", &case.with_object(patched)).await;
                prop_assert_eq!(status, 200);
                served_view(&answer["response"])?
            };
            let mut both = decision_view(&after);
            if after["allowed"] == true {
                both["patch"] = mutate["patch"].clone();
            }
            both
        };
        Ok(Served {
            mutate,
            validate,
            both,
        })
    })
}

/// Runs `kadmit ARGS` and parses its JSON array output, by `key` (a path).
fn run_json(args: &[String], key: &str) -> Result<BTreeMap<String, Value>, TestCaseError> {
    let output = Command::new(KADMIT).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let entries: Result<Vec<Value>, _> = serde_json::from_str(&stdout);
    prop_assert!(
        entries.is_ok(),
        "kadmit {}: not a JSON array ({:?}):\n{}\n{}",
        args.join(" "),
        output.status,
        stdout,
        stderr
    );
    Ok(entries
        .unwrap()
        .into_iter()
        .map(|entry| (entry[key].as_str().unwrap().to_owned(), entry))
        .collect())
}

/// How `check` is run on one review's pod, or why it is not compared.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CheckPlan {
    /// With `--cluster`: the namespace's `enforce` label gives the level, or the namespace is
    /// not in the snapshot (an input error, as the server cannot look it up either).
    Cluster,
    /// With `--level`/`--version` of the configuration's defaults: the namespace has no
    /// `enforce` label (check does not read `--config`).
    Level,
    /// Not compared.
    Excluded(&'static str),
}

fn check_plan(setup: &Setup, case: &Case) -> CheckPlan {
    if !case.is_create() {
        return CheckPlan::Excluded("UPDATE (check evaluates manifests as creations)");
    }
    let sourceless = case
        .object()
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .is_some_and(|volumes| {
            volumes
                .iter()
                .any(|v| v.as_object().is_some_and(|v| v.len() == 1))
        });
    if sourceless {
        return CheckPlan::Excluded("a volume without a source (check defaults it to emptyDir)");
    }
    let Some(snapshot) = &setup.cluster else {
        return CheckPlan::Level;
    };
    match snapshot.namespace(case.namespace()) {
        Ok(Some(namespace)) => {
            let labelled =
                namespace.metadata.labels.as_ref().is_some_and(|labels| {
                    labels.contains_key("pod-security.kubernetes.io/enforce")
                });
            if labelled {
                CheckPlan::Cluster
            } else {
                CheckPlan::Level
            }
        }
        _ => CheckPlan::Cluster,
    }
}

/// The manifest `check` is given for a review: the pod, in the request's namespace.
fn manifest(case: &Case) -> Value {
    let mut object = case.object().clone();
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    object["metadata"]["namespace"] = json!(case.namespace());
    object
}

/// Counts of what was compared, for the closing line.
#[derive(Default)]
struct Tally(Mutex<BTreeMap<String, usize>>);

impl Tally {
    fn add(&self, what: impl Into<String>) {
        *self.0.lock().unwrap().entry(what.into()).or_default() += 1;
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (what, n) in self.0.lock().unwrap().iter() {
            writeln!(f, "  {n:5}  {what}")?;
        }
        Ok(())
    }
}

fn agree(
    runtime: &Runtime,
    setups: &[Setup],
    batch: &Batch,
    tally: &Tally,
) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let reviews = dir.path().join("reviews");
    std::fs::create_dir(&reviews).unwrap();
    let review_file = |i: usize| reviews.join(format!("{i:03}.json")).display().to_string();
    for (i, case) in batch.0.iter().enumerate() {
        std::fs::write(review_file(i), serde_json::to_vec(&case.review).unwrap()).unwrap();
    }
    for setup in setups {
        let served = batch
            .0
            .iter()
            .map(|case| serve_case(runtime, setup, case))
            .collect::<Result<Vec<_>, _>>()?;

        // kadmit replay: each endpoint alone, and what it runs by default (mutate, then validate).
        // The policy that denied each review on /validate, as replay names it (the wire answer
        // does not say; replay's answers are checked equal to the server's first).
        let mut denied_by = vec![Value::Null; batch.0.len()];
        for route in ["mutate", "validate", "both"] {
            let mut args = vec![
                "replay".to_owned(),
                "--output".to_owned(),
                "json".to_owned(),
            ];
            args.extend(setup.replay_args.iter().cloned());
            if route != "both" {
                args.extend(["--endpoint".to_owned(), route.to_owned()]);
            }
            args.push(reviews.display().to_string());
            let replayed = run_json(&args, "source")?;
            prop_assert_eq!(
                replayed.len(),
                batch.0.len(),
                "{}: replay {}",
                setup.name,
                route
            );
            for (i, (case, served)) in batch.0.iter().zip(&served).enumerate() {
                let at = format!("{} review {i:03}, replay --endpoint {route}", setup.name);
                let entry = replayed.get(&review_file(i));
                prop_assert!(entry.is_some(), "{}: not replayed", at);
                let entry = entry.unwrap();
                prop_assert!(
                    entry.get("error").is_none(),
                    "{}: the server answered, replay refused: {}",
                    at,
                    entry
                );
                prop_assert_eq!(entry["uid"].as_str(), Some(case.uid()), "{}", at);
                let (served, replayed) = match route {
                    "mutate" => (served.mutate.clone(), replayed_view(entry)),
                    "validate" => (served.validate.clone(), replayed_view(entry)),
                    _ => (served.both.clone(), decision_view(&replayed_view(entry))),
                };
                prop_assert_eq!(&served, &replayed, "{}: serve (left) and replay differ", at);
                if route == "validate" {
                    denied_by[i] = entry["policy"].clone();
                }
                tally.add(format!(
                    "{}: replay --endpoint {route} agreed ({})",
                    setup.name,
                    if served["allowed"] == true {
                        "allowed"
                    } else {
                        "denied"
                    }
                ));
            }
        }

        // kadmit check, on the pods of the reviews it applies to.
        let plans: Vec<CheckPlan> = batch.0.iter().map(|c| check_plan(setup, c)).collect();
        let check_dir = dir.path().join(setup.name.replace(' ', "-"));
        let check_file = |plan: &CheckPlan, i: usize| {
            let sub = if *plan == CheckPlan::Cluster {
                "cluster"
            } else {
                "level"
            };
            check_dir.join(sub).join(format!("{i:03}.json"))
        };
        for (i, (case, plan)) in batch.0.iter().zip(&plans).enumerate() {
            if let CheckPlan::Excluded(why) = plan {
                tally.add(format!("{}: check not compared: {why}", setup.name));
                continue;
            }
            let file = check_file(plan, i);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, serde_json::to_vec(&manifest(case)).unwrap()).unwrap();
        }
        let mut checked = BTreeMap::new();
        for plan in [CheckPlan::Cluster, CheckPlan::Level] {
            let sub = check_file(&plan, 0).parent().unwrap().to_owned();
            if !sub.is_dir() {
                continue;
            }
            let mut args = vec!["check".to_owned(), "--output".to_owned(), "json".to_owned()];
            match plan {
                CheckPlan::Cluster => args.extend([
                    "--cluster".to_owned(),
                    setup.cluster_file.as_ref().unwrap().display().to_string(),
                ]),
                _ => args.extend([
                    "--level".to_owned(),
                    setup.default_level.0.clone(),
                    "--version".to_owned(),
                    setup.default_level.1.clone(),
                ]),
            }
            args.push(sub.display().to_string());
            checked.extend(run_json(&args, "path")?);
        }
        for (i, ((case, plan), served)) in batch.0.iter().zip(&plans).zip(&served).enumerate() {
            if matches!(plan, CheckPlan::Excluded(_)) {
                continue;
            }
            let at = format!("{} review {i:03}, check ({plan:?})", setup.name);
            let entry = checked.get(&check_file(plan, i).display().to_string());
            prop_assert!(entry.is_some(), "{}: not checked", at);
            let entry = entry.unwrap();
            let validate = &served.validate;
            let undecodable =
                validate["allowed"] == false && validate["code"] == 400 && denied_by[i].is_null();
            let unknown_namespace = setup
                .cluster
                .as_ref()
                .is_some_and(|s| s.namespace(case.namespace()).unwrap().is_none());
            if undecodable || unknown_namespace {
                // The server cannot evaluate Pod Security (it answers 400, or Pod Security
                // denies with 500 as the namespace cannot be found); check reports an input
                // error for the same pod.
                prop_assert!(
                    entry.get("error").is_some(),
                    "{}: the server could not evaluate ({}), check did: {}",
                    at,
                    validate,
                    entry
                );
                if unknown_namespace && !undecodable {
                    prop_assert_eq!(&validate["allowed"], false, "{}", at);
                    prop_assert_eq!(&validate["code"], 500, "{}", at);
                }
                tally.add(format!(
                    "{}: check agreed (an input error: {})",
                    setup.name,
                    if undecodable {
                        "not a Pod"
                    } else {
                        "namespace not in the snapshot"
                    }
                ));
                continue;
            }
            prop_assert!(
                entry.get("error").is_none(),
                "{}: check refused what the server evaluated: {} (server: {})",
                at,
                entry,
                validate
            );
            // Pod Security runs first: when it denies, the server's status is its own.
            let pod_security_denied = denied_by[i] == "pod-security";
            prop_assert_eq!(
                &entry["allowed"],
                &json!(!pod_security_denied),
                "{}: check {} vs the server's {}",
                at,
                entry,
                validate
            );
            if pod_security_denied {
                prop_assert_eq!(&entry["message"], &validate["message"], "{}", at);
            }
            // The level both evaluated, as the server records it.
            if let Some(policy) = validate["auditAnnotations"].get("enforce-policy") {
                prop_assert_eq!(&entry["policy"], policy, "{}", at);
            }
            tally.add(format!(
                "{}: check agreed ({}, {plan:?})",
                setup.name,
                if pod_security_denied {
                    "denied by Pod Security"
                } else {
                    "allowed by Pod Security"
                }
            ));
        }
    }
    Ok(())
}

#[test]
fn serve_replay_and_check_agree() {
    const TEST: &str = "serve_replay_and_check_agree";
    let runtime = runtime();
    let setups = start_setups(&runtime);
    let (mut runner, seed) = runner(TEST, AGREEMENT_CASES);
    let tally = Tally::default();
    let started = std::time::Instant::now();
    let result = runner.run(&batch(), |batch| agree(&runtime, &setups, &batch, &tally));
    println!("{TEST}: {:.1?}\n{tally}", started.elapsed());
    stop_setups(&runtime, setups);
    report(TEST, seed, result);
}

// ---------------------------------------------------------------------------------------------
// The generators are not vacuous
// ---------------------------------------------------------------------------------------------

/// Over a fixed sample of generated reviews, evaluated in-process with every policy on, each
/// outcome the properties are about occurs: each policy patches, each kind of denial happens,
/// Pod Security allows and denies at each enforce level. A generator that lost a field would
/// make the properties pass vacuously; this fails instead.
#[test]
fn generated_reviews_reach_every_policy_and_outcome() {
    let setup_config = Config::from_yaml(
        &std::fs::read_to_string(repo_file("scripts/bench-full-policies.yaml")).unwrap(),
    )
    .unwrap();
    let cluster_text =
        std::fs::read_to_string(repo_file("scripts/bench-cluster.yaml")).unwrap() + EXTRA_CLUSTER;
    let cluster = Snapshot::parse(&cluster_text).unwrap();
    let pipeline = Pipeline::from_config(&setup_config);
    let mut runner = TestRunner::deterministic();
    let strategy = case();
    let mut seen = BTreeSet::new();
    for _ in 0..600 {
        let case = strategy.new_tree(&mut runner).unwrap().current();
        let review = Review::from_value(case.review.clone()).unwrap();
        let mutated = pipeline.evaluate(Endpoint::Mutate, &review, &cluster);
        for op in &mutated.response.patch {
            let path = op.path().to_string();
            let what = if path.contains("gmsaCredentialSpec") {
                "patch: gmsa"
            } else if path.contains("resources") || path.contains("annotations") {
                "patch: default-resources"
            } else if path.contains("imagePullSecrets") {
                "patch: image-pull-secrets"
            } else {
                "patch: security-defaults"
            };
            seen.insert(what.to_owned());
        }
        let validated = pipeline.evaluate(Endpoint::Validate, &review, &cluster);
        let response = &validated.response;
        match (&validated.denied_by, &response.status) {
            (None, None) => {}
            (Some(policy), Some(status)) => {
                seen.insert(format!("validate: {policy} denies {}", status.code));
            }
            (None, Some(status)) => {
                seen.insert(format!("validate: denied {}", status.code));
            }
            (Some(_), None) => panic!("a denial without a status"),
        }
        if case.is_create()
            && ["psa-baseline", "psa-restricted", "shop"].contains(&case.namespace())
        {
            let pod_security = validated.denied_by.as_deref() == Some("pod-security");
            seen.insert(format!(
                "{}: {}",
                case.namespace(),
                if pod_security { "denied" } else { "allowed" }
            ));
        }
        if case.request()["operation"] == "UPDATE" {
            seen.insert("UPDATE".to_owned());
        }
    }
    let wanted = [
        "patch: default-resources",
        "patch: gmsa",
        "patch: image-pull-secrets",
        "patch: security-defaults",
        "validate: denied 400",
        "validate: gmsa denies 403",
        "validate: gmsa denies 422",
        "validate: pod-security denies 403",
        "validate: pod-security denies 500",
        "psa-baseline: allowed",
        "psa-baseline: denied",
        "psa-restricted: allowed",
        "psa-restricted: denied",
        "shop: allowed",
        "shop: denied",
        "UPDATE",
    ];
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|w| !seen.contains(**w))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "never reached: {missing:?}\nseen: {seen:#?}"
    );
}
