//! `kadmit replay` as users run it: the whole published review corpus, the published
//! request/response pairs where the decision is one kadmit makes, the three outputs, `--diff`
//! on a capture file after a configuration change, standard input, manifests and exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::{Value, json};

const KADMIT: &str = env!("CARGO_BIN_EXE_kadmit");

/// Runs `kadmit replay ARGS`, with `stdin` on standard input; returns the exit code, stdout
/// and stderr.
fn replay(args: &[&str], stdin: Option<&str>) -> (Option<i32>, String, String) {
    let mut child = Command::new(KADMIT)
        .arg("replay")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// `replay --output json ARGS`, parsed.
fn replay_json(args: &[&str], stdin: Option<&str>) -> (Option<i32>, Vec<Value>, String) {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = replay(&all, stdin);
    let entries: Vec<Value> = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not a JSON array ({e}): {stdout}\nstderr: {stderr}"));
    (code, entries, stderr)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A configuration whose namespace defaults enforce and warn at `level`, as clusters usually
/// set both labels together.
fn config(dir: &Path, name: &str, level: &str) -> PathBuf {
    write(
        dir,
        name,
        &format!("podSecurity:\n  defaults:\n    enforce: {level}\n    warn: {level}\n"),
    )
}

/// The contract's keys of a replayed review, and what kadmit adds.
const CONTRACT_KEYS: [&str; 12] = [
    "source",
    "uid",
    "kind",
    "namespace",
    "name",
    "operation",
    "allowed",
    "code",
    "message",
    "warnings",
    "auditAnnotations",
    "patch",
];
const ADDED_KEYS: [&str; 3] = ["policy", "endpoint", "changes"];

/// Checks one element of `--output json` against the contract.
fn assert_contract_shape(entry: &Value) {
    let object = entry.as_object().expect("each element is an object");
    assert!(
        entry["source"].as_str().is_some_and(|s| !s.is_empty()),
        "{entry}"
    );
    if let Some(error) = entry.get("error") {
        assert!(error.as_str().is_some_and(|e| e.len() > 10), "{entry}");
        assert_eq!(
            object.len(),
            2,
            "an error has source and error only: {entry}"
        );
        return;
    }
    for key in CONTRACT_KEYS {
        assert!(object.contains_key(key), "missing `{key}`: {entry}");
    }
    for key in object.keys() {
        assert!(
            CONTRACT_KEYS.contains(&key.as_str()) || ADDED_KEYS.contains(&key.as_str()),
            "unexpected key `{key}`: {entry}"
        );
    }
    assert!(
        entry["uid"].is_string() && entry["kind"].is_string(),
        "{entry}"
    );
    assert!(
        entry["operation"].is_string() && entry["allowed"].is_boolean(),
        "{entry}"
    );
    assert!(entry["namespace"].is_string() || entry["namespace"].is_null());
    assert!(entry["name"].is_string() || entry["name"].is_null());
    assert!(entry["code"].is_u64() || entry["code"].is_null());
    assert!(entry["message"].is_string() || entry["message"].is_null());
    assert!(
        entry["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .all(Value::is_string)
    );
    assert!(
        entry["auditAnnotations"]
            .as_object()
            .unwrap()
            .values()
            .all(Value::is_string)
    );
    for op in entry["patch"].as_array().unwrap() {
        assert!(op["op"].is_string() && op["path"].is_string(), "{entry}");
    }
    if entry["allowed"] == false {
        assert!(
            entry["code"].is_u64() && entry["message"].is_string(),
            "{entry}"
        );
    }
}

/// The corpus files, relative to `corpus`, sorted.
fn corpus_files(corpus: &Path) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("json" | "jsonl" | "yaml" | "yml")
            ) {
                out.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    walk(corpus, &mut paths);
    let mut names: Vec<String> = paths
        .iter()
        .map(|p| p.strip_prefix(corpus).unwrap().display().to_string())
        .collect();
    names.sort();
    names
}

/// Entries by the corpus file they came from.
fn by_file<'a>(corpus: &Path, entries: &'a [Value]) -> BTreeMap<String, Vec<&'a Value>> {
    let prefix = format!("{}/", corpus.display());
    let mut out: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for entry in entries {
        let source = entry["source"].as_str().unwrap();
        let relative = source.strip_prefix(&prefix).unwrap_or(source);
        // `file`, `file:line` or `file:line[item]`.
        let file = match relative.rsplit_once(':') {
            Some((file, position)) if position.starts_with(|c: char| c.is_ascii_digit()) => file,
            _ => relative,
        };
        out.entry(file.to_owned()).or_default().push(entry);
    }
    out
}

#[test]
fn the_whole_corpus_gives_a_result_or_a_precise_error_per_document() {
    let Some(shared) =
        common::shared_dir("the_whole_corpus_gives_a_result_or_a_precise_error_per_document")
    else {
        return;
    };
    let corpus = shared.join("conformance/reviews");
    let files = corpus_files(&corpus);
    assert!(
        files.len() >= 150,
        "the whole corpus: {} files",
        files.len()
    );
    let dir = tempfile::tempdir().unwrap();
    let baseline = config(dir.path(), "baseline.yaml", "baseline");

    for (label, extra) in [
        ("default configuration", vec![]),
        (
            "enforce baseline",
            vec!["--config", baseline.to_str().unwrap()],
        ),
    ] {
        let mut args = extra.clone();
        args.push(corpus.to_str().unwrap());
        let (code, entries, stderr) = replay_json(&args, None);
        // The corpus holds unusable documents on purpose: input errors win over denials.
        assert_eq!(code, Some(2), "{label}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        for entry in &entries {
            assert_contract_shape(entry);
        }
        // Every file gives at least one element, and the elements are in input order.
        let grouped = by_file(&corpus, &entries);
        for file in &files {
            assert!(grouped.contains_key(file), "{label}: nothing for {file}");
        }
        assert_eq!(grouped.len(), files.len(), "{label}: {:?}", grouped.keys());

        let results: Vec<&Value> = entries
            .iter()
            .filter(|e| e.get("error").is_none())
            .collect();
        let errors: Vec<&Value> = entries
            .iter()
            .filter(|e| e.get("error").is_some())
            .collect();
        let mut decisions: BTreeMap<String, usize> = BTreeMap::new();
        for result in &results {
            let key = match (result["allowed"].as_bool(), result["policy"].as_str()) {
                (Some(true), _) => "allowed".to_owned(),
                (_, Some(policy)) => format!("denied by {policy} ({})", result["code"]),
                (_, None) => format!("denied before any policy ({})", result["code"]),
            };
            *decisions.entry(key).or_default() += 1;
        }
        let mut classes: BTreeMap<String, usize> = BTreeMap::new();
        for error in &errors {
            let message = error["error"].as_str().unwrap();
            *classes.entry(error_class(message)).or_default() += 1;
        }
        println!(
            "{label}: {} documents from {} files: {} results, {} errors",
            entries.len(),
            files.len(),
            results.len(),
            errors.len()
        );
        for (decision, count) in &decisions {
            println!("  {count:4}  {decision}");
        }
        for (class, count) in &classes {
            println!("  {count:4}  error: {class}");
        }
        assert!(results.len() >= 90, "{label}: {}", results.len());
        // Every error is one of the precise kinds, never a catch-all.
        for error in &errors {
            let message = error["error"].as_str().unwrap();
            assert!(
                [
                    "request: missing field `",
                    "the AdmissionReview has no request, only a response",
                    "request.operation: unknown variant `",
                    "` where an object belongs at request.",
                    "the document is `null`",
                    "not JSON: ",
                    "apiVersion is missing",
                ]
                .iter()
                .any(|known| message.contains(known)),
                "{label}: unexpected error {error}"
            );
        }

        // The odd documents of NOTES.md, each with its precise error.
        let error_of = |file: &str| -> String {
            let entries = &grouped[file];
            assert_eq!(entries.len(), 1, "{file}");
            entries[0]["error"]
                .as_str()
                .unwrap_or_else(|| panic!("{file} replayed: {}", entries[0]))
                .to_owned()
        };
        let expected_errors = [
            (
                "sse-secure-systems__connaisseur/25_null_request.json",
                "the document is `null`",
            ),
            (
                "sse-secure-systems__connaisseur/21_broken_admission_request.json",
                "request: missing field `uid`",
            ),
            (
                "sse-secure-systems__connaisseur/26_broken_update_admission_request.json",
                "request: missing field `uid`",
            ),
            (
                "open-policy-agent__gatekeeper/input.md__L23-75.json",
                "not JSON: key must be a string at line 23 column 7",
            ),
            (
                "cloud-custodian__cloud-custodian/create_pod.json",
                "`\"None\"` where an object belongs at request.oldObject",
            ),
            (
                "cloud-custodian__cloud-custodian/delete_pod.json",
                "`\"None\"` where an object belongs at request.object",
            ),
            (
                "cloud-custodian__cloud-custodian/connect_pod_exec_options.json",
                "`\"None\"` where an object belongs at request.",
            ),
            (
                "sse-secure-systems__connaisseur/09_dply_multi_image.json",
                "`\"\"` where an object belongs at request.oldObject",
            ),
            (
                "sse-secure-systems__connaisseur/04_cronjob.json",
                "`\"None\"` where an object belongs at request.oldObject",
            ),
            (
                "kubernetes__api/HEAD/admission.k8s.io.v1.AdmissionReview.json",
                "request.operation: unknown variant `operationValue`",
            ),
            (
                "kubernetes__api/HEAD/admission.k8s.io.v1beta1.AdmissionReview.yaml",
                "request.operation: unknown variant `operationValue`",
            ),
            (
                "kubernetes__api/2020-06-30_6248f33/admission.k8s.io.v1.AdmissionReview.json",
                "request.operation: unknown variant `¡ıŵDz`",
            ),
            (
                "rtisma__admission-controller-webhook-demo/admission-review.example.json",
                "request: missing field `uid`",
            ),
            (
                "cert-manager__website/webhook.md__L706.json",
                "request: missing field `uid`",
            ),
            (
                "open-policy-agent__gatekeeper/gator.md__L507-516.yaml",
                "request: missing field `uid`",
            ),
            (
                "open-policy-agent__gatekeeper-library/host-process/update.yaml",
                "request: missing field `uid`",
            ),
            (
                "mafr__k8s-admission-webhook/admission-review.json",
                "apiVersion is missing",
            ),
            (
                "linkerd__linkerd2/expected/inject-enabled-response.yaml",
                "there is a key `iapiVersion`",
            ),
            (
                "phenixblue__imageswap-webhook/expected/test-pod01-response.json",
                "no request, only a response",
            ),
            (
                "cloud-custodian__cloud-custodian/expected/controllermode.rst__L152_response.json",
                "no request, only a response",
            ),
        ];
        for (file, expected) in expected_errors {
            let error = error_of(file);
            assert!(error.contains(expected), "{file}: {error}");
        }
        // Odd but usable: replayed, with the answer the server gives.
        let result_of = |file: &str| -> &Value {
            let entries = &grouped[file];
            assert!(entries[0].get("error").is_none(), "{file}: {}", entries[0]);
            entries[0]
        };
        // Bare AdmissionRequests are wrapped as v1 reviews.
        assert_eq!(
            result_of("kubewarden__policies/psa-label-enforcer-policy/namespace_with_labels.json")
                ["kind"],
            "Namespace"
        );
        // `kind: "pod"` in lower case, resource `pods`: Pod Security goes by the resource, as
        // upstream does, and cannot decode the object as the kind it claims once a level
        // applies; the privileged default never looks.
        let lower = result_of(
            "kubewarden__policies/namespace-label-propagator-policy/pod_with_no_labels.json",
        );
        assert_eq!(lower["kind"], "pod");
        if extra.is_empty() {
            assert_eq!(lower["allowed"], true, "{lower}");
        } else {
            assert_eq!(
                (&lower["code"], &lower["policy"]),
                (&json!(400), &json!("pod-security"))
            );
        }
        // A Scale whose object is a Pod is not a Pod review.
        assert_eq!(
            result_of("datreeio__admission-webhook-datree/applyNotAllowedRequest.json")["kind"],
            "Scale"
        );
        // A malformed member no policy reads (this pod's creationTimestamp) is skipped unread,
        // not refused: the pod is evaluated like any other (review/skip.rs).
        let skipped = result_of("sse-secure-systems__connaisseur/13_unknown_parent.json");
        assert_eq!(skipped["kind"], "Pod", "{skipped}");
        assert_ne!(skipped["code"], 400, "{skipped}");
    }
}

/// An error message without its document-specific parts (quoted values, hints), to group the
/// printed summary.
fn error_class(message: &str) -> String {
    let mut class = String::new();
    let mut quoted = false;
    for c in message.split(" (").next().unwrap_or(message).chars() {
        match c {
            '`' => {
                quoted = !quoted;
                if quoted {
                    class.push_str("`…`");
                }
            }
            _ if quoted => {}
            c => class.push(c),
        }
    }
    class
}

/// The published request/response pairs of NOTES.md, compared where the decision is one
/// kadmit makes:
/// - kubewarden kwctl `tests/e2e.rs` and policy-server `tests/integration_test.rs` expect the
///   privileged pods denied and the others allowed, and kubewarden's pod-privileged policy
///   rejects `privileged_container.json`: a privileged container is what Pod Security
///   `baseline` forbids, so with `enforce: baseline` kadmit must agree.
/// - phenixblue/imageswap's expected responses allow every request and rewrite image
///   registries: the decision (allowed, no message, no warnings) is kadmit's too, but the
///   image rewrites are not something kadmit does, so with `--diff` the patch, and only the
///   patch, differs where imageswap sent one.
/// - cloud-custodian's documented answer allows the captured pod, with its own policy's
///   warning and an "OK" status: the decision agrees, the message and warnings are custodian's.
/// - kubernetes/api's round-trip fixtures carry a response too, but their requests hold
///   placeholder or fuzzed operations (`operationValue`, `¡ıŵDz`) that no API server sends:
///   kadmit refuses them as the server does (asserted in the corpus test), so there is no
///   decision to compare. linkerd's response is a proxy injection behind an `iapiVersion` typo,
///   and connaisseur's, datree's and gatekeeper's expectations are image-signature, datree
///   and Rego policy results, none of which kadmit makes.
#[test]
fn published_pairs_agree_where_the_decision_is_kadmits() {
    let Some(shared) = common::shared_dir("published_pairs_agree_where_the_decision_is_kadmits")
    else {
        return;
    };
    let corpus = shared.join("conformance/reviews");
    let dir = tempfile::tempdir().unwrap();
    let baseline = config(dir.path(), "baseline.yaml", "baseline");

    let expectations = [
        (
            "kubewarden__kwctl/privileged-pod-admission-review.json",
            false,
        ),
        (
            "kubewarden__kwctl/unprivileged-pod-admission-review.json",
            true,
        ),
        (
            "kubewarden__policy-server/pod_with_privileged_containers.json",
            false,
        ),
        (
            "kubewarden__policy-server/pod_without_privileged_containers.json",
            true,
        ),
        (
            "kubewarden__policies/pod-privileged-policy/privileged_container.json",
            false,
        ),
    ];
    let paths: Vec<String> = expectations
        .iter()
        .map(|(file, _)| corpus.join(file).display().to_string())
        .collect();
    let mut args = vec!["--config", baseline.to_str().unwrap()];
    args.extend(paths.iter().map(String::as_str));
    let (code, entries, stderr) = replay_json(&args, None);
    assert_eq!(code, Some(1), "denials and no input errors: {stderr}");
    assert_eq!(entries.len(), expectations.len());
    for ((file, allowed), entry) in expectations.iter().zip(&entries) {
        assert_eq!(entry["allowed"], *allowed, "{file}: {entry}");
        if !allowed {
            assert_eq!(entry["policy"], "pod-security", "{file}");
            assert_eq!(entry["code"], 403, "{file}");
            let message = entry["message"].as_str().unwrap();
            assert!(
                message.contains("violates PodSecurity \"baseline:latest\": privileged"),
                "{file}: {message}"
            );
        }
    }
    println!(
        "kubewarden pairs: {} of {} agree",
        entries.len(),
        expectations.len()
    );

    // imageswap and cloud-custodian: the published request with its published response, as
    // one envelope, through --diff.
    let pairs = dir.path().join("pairs");
    std::fs::create_dir(&pairs).unwrap();
    let mut with_patch = BTreeSet::new();
    let imageswap = corpus.join("phenixblue__imageswap-webhook");
    let mut pair_count = 0;
    for request_file in corpus_files(&imageswap) {
        if request_file.starts_with("expected/") {
            continue;
        }
        let stem = request_file.trim_end_matches(".json");
        let response_file = ["-response.json", "-rsponse.json"]
            .iter()
            .map(|suffix| imageswap.join(format!("expected/{stem}{suffix}")))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("no expected response for {request_file}"));
        let mut review: Value =
            serde_json::from_slice(&std::fs::read(imageswap.join(&request_file)).unwrap()).unwrap();
        let response: Value =
            serde_json::from_slice(&std::fs::read(&response_file).unwrap()).unwrap();
        if response["response"]["patch"].is_string() {
            with_patch.insert(format!("{stem}.json"));
        }
        review["response"] = response["response"].clone();
        write(&pairs, &format!("{stem}.json"), &review.to_string());
        pair_count += 1;
    }
    let custodian = corpus.join("cloud-custodian__cloud-custodian");
    let mut review: Value = serde_json::from_slice(
        &std::fs::read(custodian.join("controllermode.rst__L144_log.json")).unwrap(),
    )
    .unwrap();
    let response: Value = serde_json::from_slice(
        &std::fs::read(custodian.join("expected/controllermode.rst__L152_response.json")).unwrap(),
    )
    .unwrap();
    review["response"] = response["response"].clone();
    write(&pairs, "custodian.json", &review.to_string());

    let (code, changed, stderr) = replay_json(&["--diff", pairs.to_str().unwrap()], None);
    assert_eq!(code, Some(1), "{stderr}");
    let mut changed_files = BTreeSet::new();
    for entry in &changed {
        assert_contract_shape(entry);
        let file = Path::new(entry["source"].as_str().unwrap())
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let fields: Vec<&str> = entry["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["field"].as_str().unwrap())
            .collect();
        assert!(!fields.contains(&"decision"), "{file}: {entry}");
        if file == "custodian.json" {
            assert_eq!(fields, vec!["message", "warnings"], "{entry}");
        } else {
            assert_eq!(
                fields,
                vec!["patch"],
                "{file}: only imageswap's rewrite differs"
            );
            assert!(entry["changes"][0]["now"] == json!([]));
            changed_files.insert(file);
        }
    }
    assert_eq!(
        changed_files, with_patch,
        "exactly the pairs where imageswap patched"
    );
    assert!(
        stderr.contains(&format!(
            "{} of {} compared reviews would now be answered differently",
            with_patch.len() + 1,
            pair_count + 1
        )),
        "{stderr}"
    );
    println!(
        "imageswap pairs: {pair_count} decisions agree, {} differ in the image rewrite only; cloud-custodian: decision agrees",
        with_patch.len()
    );
}

#[test]
fn junit_output_parses_and_counts_what_json_counts() {
    let dir = tempfile::tempdir().unwrap();
    let baseline = config(dir.path(), "baseline.yaml", "baseline");
    // A name full of what XML escaping must get right, denied so it reaches the message.
    let nasty = "x\u{1}<&>\"' ]]> \u{1b}[31m ő岅";
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": nasty},
        "spec": {"containers": [{"name": "c", "image": "nginx", "securityContext": {"privileged": true}}]}});
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    write(&inputs, "pod.json", &pod.to_string());
    write(&inputs, "null.json", "null");
    write(
        &inputs,
        "two.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: fine}\nspec: {containers: [{name: c, image: nginx}]}\n---\nkind: Nothing\n",
    );
    let mut paths = vec![inputs.display().to_string()];
    if let Some(shared) = common::shared_dir("junit_output_parses_and_counts_what_json_counts") {
        paths.push(shared.join("conformance/reviews").display().to_string());
    }
    let mut args = vec!["--config", baseline.to_str().unwrap()];
    args.extend(paths.iter().map(String::as_str));
    let (_, entries, _) = replay_json(&args, None);
    let denied = entries.iter().filter(|e| e["allowed"] == false).count();
    let errors = entries.iter().filter(|e| e.get("error").is_some()).count();

    let mut junit_args = vec!["--output", "junit"];
    junit_args.extend_from_slice(&args);
    let (code, xml, stderr) = replay(&junit_args, None);
    assert_eq!(code, Some(2), "{stderr}");
    let document = roxmltree::Document::parse(&xml)
        .unwrap_or_else(|e| panic!("JUnit output is not XML: {e}\n{xml}"));
    let root = document.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let cases: Vec<roxmltree::Node> = root
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), entries.len(), "one test case per review");
    let failures = root
        .descendants()
        .filter(|n| n.has_tag_name("failure"))
        .count();
    let error_nodes = root
        .descendants()
        .filter(|n| n.has_tag_name("error"))
        .count();
    assert_eq!(failures, denied);
    assert_eq!(error_nodes, errors);
    let attribute = |name: &str| root.attribute(name).unwrap().parse::<usize>().unwrap();
    assert_eq!(attribute("tests"), entries.len());
    assert_eq!(attribute("failures"), denied);
    assert_eq!(attribute("errors"), errors);
    let suites: Vec<roxmltree::Node> = root
        .children()
        .filter(|n| n.has_tag_name("testsuite"))
        .collect();
    let suite_tests: usize = suites
        .iter()
        .map(|s| s.attribute("tests").unwrap().parse::<usize>().unwrap())
        .sum();
    assert_eq!(suite_tests, entries.len());
    for case in &cases {
        assert!(case.attribute("name").is_some_and(|n| !n.is_empty()));
        assert!(case.attribute("classname").is_some());
    }
    // The nasty name survives as text, its forbidden characters visibly escaped.
    let failure = root
        .descendants()
        .find(|n| n.has_tag_name("failure") && n.attribute("message").unwrap().contains("]]>"))
        .expect("the nasty pod is denied");
    let message = failure.attribute("message").unwrap();
    assert!(
        message.contains("x\\u{0001}<&>\"' ]]> \\u{001b}[31m ő岅"),
        "{message}"
    );
    assert_eq!(failure.attribute("type"), Some("pod-security"));
    println!(
        "JUnit: {} test cases, {failures} failures, {error_nodes} errors in {} suites",
        cases.len(),
        suites.len()
    );
}

/// A v1 AdmissionReview of a pod CREATE in `default`.
fn pod_review(uid: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": name,
            "namespace": "default",
            "operation": "CREATE",
            "userInfo": {"username": "alice"},
            "object": {"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": name, "namespace": "default"}, "spec": spec},
        }
    })
}

fn deployment_review(uid: &str, name: &str, pod_spec: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "name": name,
            "namespace": "default",
            "operation": "CREATE",
            "userInfo": {"username": "alice"},
            "object": {"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": name, "namespace": "default"},
                       "spec": {"selector": {"matchLabels": {"app": name}},
                                "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec}}},
        }
    })
}

/// The AdmissionReview kadmit sent back, rebuilt from a `--output json` element.
fn sent_back(entry: &Value) -> Value {
    let mut response = json!({"uid": entry["uid"], "allowed": entry["allowed"]});
    if let Some(message) = entry["message"].as_str() {
        response["status"] =
            json!({"status": "Failure", "message": message, "code": entry["code"]});
    }
    if !entry["warnings"].as_array().unwrap().is_empty() {
        response["warnings"] = entry["warnings"].clone();
    }
    if !entry["patch"].as_array().unwrap().is_empty() {
        response["patchType"] = json!("JSONPatch");
        response["patch"] =
            json!(base64::engine::general_purpose::STANDARD.encode(entry["patch"].to_string()));
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
}

#[test]
fn diff_reports_exactly_the_reviews_a_config_change_affects() {
    let dir = tempfile::tempdir().unwrap();
    let baseline = config(dir.path(), "baseline.yaml", "baseline");
    let restricted = config(dir.path(), "restricted.yaml", "restricted");
    let restricted_ok = json!({
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "app", "image": "nginx", "securityContext": {
            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]
    });
    let plain = json!({"containers": [{"name": "app", "image": "nginx"}]});
    let privileged = json!({"containers": [{"name": "app", "image": "nginx",
        "securityContext": {"privileged": true}}]});
    // (review, endpoint it was answered on, changes when baseline becomes restricted)
    let traffic: Vec<(Value, &str, &[&str])> = vec![
        // Allowed by baseline, denied by restricted.
        (
            pod_review("u-plain", "plain", plain.clone()),
            "validate",
            &["decision", "message"],
        ),
        // Denied by both, for more reasons and another level in the message.
        (
            pod_review("u-priv", "priv", privileged),
            "validate",
            &["message"],
        ),
        // Allowed by both.
        (
            pod_review("u-ok", "ok", restricted_ok.clone()),
            "validate",
            &[],
        ),
        // Workloads are warned about, not denied (podSecurity.workloads: warn).
        (
            deployment_review("u-deploy", "web", plain.clone()),
            "validate",
            &["warnings"],
        ),
        (
            deployment_review("u-deploy-ok", "web-ok", restricted_ok),
            "validate",
            &[],
        ),
        // Pod Security does not mutate: the mutate answer stays the same.
        (pod_review("u-plain-m", "plain", plain), "mutate", &[]),
    ];

    // The first replay, with the configuration in production, gives the recorded answers.
    let reviews = dir.path().join("reviews");
    std::fs::create_dir(&reviews).unwrap();
    let mut capture = String::new();
    for (index, (review, endpoint, _)) in traffic.iter().enumerate() {
        let file = write(&reviews, &format!("{index}.json"), &review.to_string());
        let (code, entries, stderr) = replay_json(
            &[
                "--config",
                baseline.to_str().unwrap(),
                "--endpoint",
                endpoint,
                file.to_str().unwrap(),
            ],
            None,
        );
        assert!(matches!(code, Some(0 | 1)), "{stderr}");
        assert_eq!(entries[0]["endpoint"], *endpoint);
        let record = json!({
            "time": "2025-06-01T12:00:00Z",
            "endpoint": endpoint,
            "dryRun": false,
            "review": review,
            "response": sent_back(&entries[0]),
        });
        capture.push_str(&record.to_string());
        capture.push('\n');
    }
    let captures = dir.path().join("captures");
    std::fs::create_dir(&captures).unwrap();
    let capture_file = write(&captures, "kadmit-capture-20250601.jsonl", &capture);
    let capture_path = capture_file.to_str().unwrap();

    // Each record goes to the endpoint it was answered on, unless --endpoint says otherwise.
    let (_, entries, _) = replay_json(
        &["--config", baseline.to_str().unwrap(), capture_path],
        None,
    );
    let endpoints: Vec<&str> = entries
        .iter()
        .map(|e| e["endpoint"].as_str().unwrap())
        .collect();
    assert_eq!(
        endpoints,
        [
            "validate", "validate", "validate", "validate", "validate", "mutate"
        ]
    );
    assert_eq!(entries[0]["source"], format!("{capture_path}:1"));
    let (_, entries, _) = replay_json(
        &[
            "--config",
            baseline.to_str().unwrap(),
            "--endpoint",
            "both",
            capture_path,
        ],
        None,
    );
    assert!(entries.iter().all(|e| e["endpoint"] == "both"));

    // Same configuration: nothing changed.
    let (code, changed, stderr) = replay_json(
        &[
            "--diff",
            "--config",
            baseline.to_str().unwrap(),
            capture_path,
        ],
        None,
    );
    assert_eq!(changed, Vec::<Value>::new(), "{stderr}");
    assert_eq!(code, Some(0));
    assert!(
        stderr.contains("0 of 6 compared reviews would now be answered differently"),
        "{stderr}"
    );

    // enforce baseline → restricted: exactly the affected reviews, with what changed.
    let (code, changed, stderr) = replay_json(
        &[
            "--diff",
            "--config",
            restricted.to_str().unwrap(),
            capture_path,
        ],
        None,
    );
    assert_eq!(code, Some(1), "{stderr}");
    let expected: Vec<(String, Vec<&str>)> = traffic
        .iter()
        .enumerate()
        .filter(|(_, (_, _, changes))| !changes.is_empty())
        .map(|(index, (_, _, changes))| (format!("{capture_path}:{}", index + 1), changes.to_vec()))
        .collect();
    let got: Vec<(String, Vec<&str>)> = changed
        .iter()
        .map(|e| {
            assert_contract_shape(e);
            let fields = e["changes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["field"].as_str().unwrap())
                .collect();
            (e["source"].as_str().unwrap().to_owned(), fields)
        })
        .collect();
    assert_eq!(got, expected);
    let decision = &changed[0]["changes"][0];
    assert_eq!(
        (&decision["recorded"], &decision["now"]),
        (&json!("allowed"), &json!("denied"))
    );
    assert!(
        stderr.contains("3 of 6 compared reviews would now be answered differently"),
        "{stderr}"
    );

    // The table says the same for people, without colour in a pipe.
    let (code, text, _) = replay(
        &[
            "--diff",
            "--config",
            restricted.to_str().unwrap(),
            capture_path,
        ],
        None,
    );
    assert_eq!(code, Some(1));
    assert!(!text.contains('\u{1b}'), "no colour when piped: {text}");
    assert!(
        text.contains("changed decision: \"allowed\" → \"denied\""),
        "{text}"
    );
    assert!(
        text.contains("3 of 6 compared reviews would now be answered differently"),
        "{text}"
    );
    assert!(
        !text.contains("u-ok") && !text.contains("CREATE Deployment default/web-ok"),
        "{text}"
    );

    // JUnit with --diff: a failure per change, unchanged reviews pass.
    let (_, xml, _) = replay(
        &[
            "--diff",
            "--output",
            "junit",
            "--config",
            restricted.to_str().unwrap(),
            capture_path,
        ],
        None,
    );
    let document = roxmltree::Document::parse(&xml).unwrap();
    let cases = document
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .count();
    let failures = document
        .descendants()
        .filter(|n| n.has_tag_name("failure"))
        .count();
    assert_eq!((cases, failures), (6, 3), "{xml}");

    // A record cut short (a full disk) is one error; the others are still compared.
    let truncated = format!("{capture}{}\n", &capture[..40]);
    let cut_file = write(&captures, "kadmit-capture-cut.jsonl", &truncated);
    let (code, changed, _) = replay_json(
        &[
            "--diff",
            "--config",
            baseline.to_str().unwrap(),
            cut_file.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, Some(2));
    assert_eq!(changed.len(), 1);
    assert!(
        changed[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("not JSON: ")
    );
    assert_eq!(changed[0]["source"], format!("{}:7", cut_file.display()));
}

#[test]
fn standard_input_manifests_and_bare_requests() {
    let dir = tempfile::tempdir().unwrap();
    let baseline = config(dir.path(), "baseline.yaml", "baseline");
    let manifests = "\
apiVersion: v1
kind: Pod
metadata:
  name: priv
spec:
  containers:
  - name: app
    image: nginx
    securityContext: {privileged: true}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: app, image: nginx}]}
---
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: team}}
- {apiVersion: v1, kind: ConfigMap, metadata: {name: settings}}
";
    let (code, entries, stderr) = replay_json(
        &[
            "--config",
            baseline.to_str().unwrap(),
            "--namespace",
            "team",
            "-",
        ],
        Some(manifests),
    );
    assert_eq!(code, Some(1), "the privileged pod is denied: {stderr}");
    let sources: Vec<&str> = entries
        .iter()
        .map(|e| e["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["-:1", "-:10", "-:19[0]", "-:19[1]"]);
    let uids: Vec<&str> = entries.iter().map(|e| e["uid"].as_str().unwrap()).collect();
    assert_eq!(
        uids,
        [
            "replay-stdin-1",
            "replay-stdin-2",
            "replay-stdin-3-0",
            "replay-stdin-3-1"
        ]
    );
    let namespaces: Vec<&Value> = entries.iter().map(|e| &e["namespace"]).collect();
    assert_eq!(
        namespaces,
        [&json!("team"), &json!("shop"), &Value::Null, &json!("team")]
    );
    assert!(
        entries
            .iter()
            .all(|e| e["operation"] == "CREATE" && e["endpoint"] == "both")
    );
    assert_eq!(entries[0]["allowed"], false);
    // The same verdict and message as `kadmit check` for the same manifest.
    let manifest_file = write(
        dir.path(),
        "priv.yaml",
        manifests.split("---").next().unwrap(),
    );
    let check = Command::new(KADMIT)
        .args([
            "check",
            "--level",
            "baseline",
            "--output",
            "json",
            manifest_file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let checked: Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(entries[0]["message"], checked[0]["message"]);

    // A bare AdmissionRequest (kwctl's input) on standard input, as one JSON document.
    let bare = json!({"uid": "b-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "operation": "CREATE", "namespace": "default",
        "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                   "spec": {"containers": [{"name": "c", "image": "nginx"}]}}});
    let (code, entries, _) = replay_json(&["-"], Some(&bare.to_string()));
    assert_eq!(code, Some(0));
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (&entries[0]["source"], &entries[0]["uid"]),
        (&json!("-"), &json!("b-1"))
    );
    assert_eq!(entries[0]["allowed"], true);

    // A capture file on standard input: JSON lines, named by line.
    let line = json!({"time": "t", "endpoint": "validate", "review": pod_review("c-1", "p", json!({"containers": []}))});
    let (code, entries, _) = replay_json(&["-"], Some(&format!("{line}\n{line}\n")));
    assert_eq!(code, Some(0));
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1]["source"], "-:2");
    assert_eq!(entries[1]["endpoint"], "validate");
}

#[test]
fn exit_codes_and_errors_that_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let baseline = config(dir.path(), "baseline.yaml", "baseline");
    let allowed = write(
        dir.path(),
        "allowed.json",
        &pod_review(
            "a",
            "a",
            json!({"containers": [{"name": "c", "image": "nginx"}]}),
        )
        .to_string(),
    );
    let denied = write(
        dir.path(),
        "denied.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: d}\nspec: {hostNetwork: true, containers: [{name: c, image: nginx}]}\n",
    );
    let broken = write(dir.path(), "broken.json", "{\"apiVersion\": ");
    let config = baseline.to_str().unwrap();

    let run = |paths: &[&Path]| {
        let mut args = vec!["--config", config];
        args.extend(paths.iter().map(|p| p.to_str().unwrap()));
        replay(&args, None)
    };
    assert_eq!(run(&[&allowed]).0, Some(0));
    assert_eq!(run(&[&allowed, &denied]).0, Some(1));
    let (code, text, _) = run(&[&denied, &broken, &allowed]);
    assert_eq!(code, Some(2), "input errors win over denials");
    assert!(text.contains("broken.json"), "{text}");
    assert!(
        text.contains("not JSON: EOF while parsing a value at line 1 column 15"),
        "{text}"
    );
    assert_eq!(
        text.lines().last().unwrap(),
        "2 reviews: 1 allowed (0 patched, 0 with warnings), 1 denied (by pod-security 1); 1 input error"
    );

    // A path that does not exist is an error for that path; the others are still replayed.
    let missing = dir.path().join("missing.json");
    let (code, entries, _) = replay_json(
        &[
            "--config",
            config,
            missing.to_str().unwrap(),
            allowed.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, Some(2));
    assert_eq!(entries.len(), 2);
    assert!(
        entries[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("cannot read: ")
    );
    assert_eq!(entries[1]["allowed"], true);

    // Usage and configuration errors.
    let empty = tempfile::tempdir().unwrap();
    let (code, _, stderr) = replay(&[empty.path().to_str().unwrap()], None);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("no *.json, *.jsonl, *.yaml or *.yml files"),
        "{stderr}"
    );
    let bad_config = write(
        dir.path(),
        "bad.yaml",
        "podSecurity:\n  defaults:\n    enforce: strict\n",
    );
    let (code, _, stderr) = replay(
        &[
            "--config",
            bad_config.to_str().unwrap(),
            allowed.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, Some(2));
    assert!(stderr.contains("podSecurity.defaults.enforce"), "{stderr}");
    let (code, _, stderr) = replay(&["--endpoint", "sideways", allowed.to_str().unwrap()], None);
    assert_eq!(code, Some(2), "{stderr}");
}

/// A cluster snapshot with a GMSA credential spec, a service account and the RBAC that lets it
/// `use` the spec, as the upstream GMSA integration templates render them.
const GMSA_SNAPSHOT: &str = "\
apiVersion: v1
kind: Namespace
metadata: {name: gmsa-test}
---
apiVersion: windows.k8s.io/v1
kind: GMSACredentialSpec
metadata: {name: web-cred-spec-0}
credspec:
  ActiveDirectoryConfig:
    GroupManagedServiceAccounts: [{Name: WebApplication0, Scope: CONTOSO}]
  CmsPlugins: [ActiveDirectory]
  DomainJoinConfig: {DnsName: contoso.com, NetBiosName: CONTOSO}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: gmsa-test}
---
kind: ClusterRole
apiVersion: rbac.authorization.k8s.io/v1
metadata: {name: web-credspecs-users}
rules:
- {apiGroups: [windows.k8s.io], resources: [gmsacredentialspecs], verbs: [use], resourceNames: [web-cred-spec-0]}
---
kind: RoleBinding
apiVersion: rbac.authorization.k8s.io/v1
metadata: {name: web-use-credspecs, namespace: gmsa-test}
subjects: [{kind: ServiceAccount, name: web, namespace: gmsa-test}]
roleRef: {kind: ClusterRole, name: web-credspecs-users, apiGroup: rbac.authorization.k8s.io}
";

fn gmsa_pod(service_account: &str) -> String {
    format!(
        "\
apiVersion: v1
kind: Pod
metadata: {{name: iis, namespace: gmsa-test}}
spec:
  serviceAccountName: {service_account}
  securityContext:
    windowsOptions: {{gmsaCredentialSpecName: web-cred-spec-0}}
  containers:
  - name: iis
    image: mcr.microsoft.com/windows/servercore/iis
"
    )
}

#[test]
fn mutation_then_validation_against_a_cluster_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = write(dir.path(), "cluster.yaml", GMSA_SNAPSHOT);
    let allowed = write(dir.path(), "allowed.yaml", &gmsa_pod("web"));
    let unauthorized = write(dir.path(), "unauthorized.yaml", &gmsa_pod("other"));
    let cluster = snapshot.to_str().unwrap();

    // Mutation fills in the credential spec's contents; validation, seeing the patched pod,
    // finds them matching and the service account authorized.
    let (code, entries, stderr) =
        replay_json(&["--cluster", cluster, allowed.to_str().unwrap()], None);
    assert_eq!(code, Some(0), "{stderr}");
    let entry = &entries[0];
    assert_eq!(
        (&entry["allowed"], &entry["endpoint"]),
        (&json!(true), &json!("both"))
    );
    let patch = entry["patch"].as_array().unwrap();
    assert_eq!(patch.len(), 1, "{entry}");
    assert_eq!(
        patch[0]["path"],
        "/spec/securityContext/windowsOptions/gmsaCredentialSpec"
    );
    let contents: Value = serde_json::from_str(patch[0]["value"].as_str().unwrap()).unwrap();
    assert_eq!(contents["DomainJoinConfig"]["DnsName"], "contoso.com");
    let (_, text, _) = replay(&["--cluster", cluster, allowed.to_str().unwrap()], None);
    assert!(
        text.contains(
            "patch:   +1 op: add /spec/securityContext/windowsOptions/gmsaCredentialSpec"
        ),
        "{text}"
    );

    // A service account without `use` is denied by validation, and a denied request keeps no
    // patch.
    let (code, entries, _) = replay_json(
        &["--cluster", cluster, unauthorized.to_str().unwrap()],
        None,
    );
    assert_eq!(code, Some(1));
    let entry = &entries[0];
    assert_eq!(
        (&entry["allowed"], &entry["policy"], &entry["code"]),
        (&json!(false), &json!("gmsa"), &json!(403))
    );
    assert!(
        entry["message"]
            .as_str()
            .unwrap()
            .contains("is not authorized to `use` GMSA cred spec")
    );
    assert_eq!(entry["patch"], json!([]));

    // Only the mutating endpoint: the patch, no validation.
    let (code, entries, _) = replay_json(
        &[
            "--cluster",
            cluster,
            "--endpoint",
            "mutate",
            unauthorized.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, Some(0));
    assert_eq!(entries[0]["patch"].as_array().unwrap().len(), 1);
}

/// The defaulting policies offline: a manifest replayed against a snapshot with a LimitRange and
/// Secrets gets the same patch the server gives, and validation (restricted, enforced) sees the
/// defaulted pod, so a pod missing only what the defaults fill in is allowed.
#[test]
fn defaulting_then_validation_offline() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = write(
        dir.path(),
        "cluster.yaml",
        "\
apiVersion: v1
kind: Namespace
metadata: {name: team, labels: {pod-security.kubernetes.io/enforce: restricted}}
---
apiVersion: v1
kind: LimitRange
metadata: {name: limits, namespace: team}
spec:
  limits:
  - {type: Container, max: {memory: 1Gi}}
---
apiVersion: v1
kind: Secret
metadata: {name: other, namespace: team}
",
    );
    let config = write(
        dir.path(),
        "config.yaml",
        "\
imagePullSecrets:
  rules:
  - images: [\"registry.example.com/*\"]
    secrets: [regcred]
securityDefaults: {enabled: true, dropAllCapabilities: true}
",
    );
    let pod = write(
        dir.path(),
        "pod.yaml",
        "\
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: team}
spec:
  securityContext: {runAsNonRoot: true}
  containers:
  - {name: web, image: registry.example.com/team/web:1.0}
",
    );
    let (code, entries, stderr) = replay_json(
        &[
            "--cluster",
            cluster.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            pod.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, Some(0), "{stderr}");
    let entry = &entries[0];
    assert_eq!(entry["allowed"], true, "{entry}");
    let annotation =
        "LimitRanger plugin set: memory request for container web; memory limit for container web";
    // One patch for the three defaulting policies together, in the order of the pod's fields.
    assert_eq!(
        entry["patch"],
        json!([
            {"op": "add", "path": "/metadata/annotations", "value": {"kubernetes.io/limit-ranger": annotation}},
            {"op": "add", "path": "/spec/containers/0/resources", "value": {"limits": {"memory": "1Gi"}, "requests": {"memory": "1Gi"}}},
            {"op": "add", "path": "/spec/containers/0/securityContext", "value": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}},
            {"op": "add", "path": "/spec/imagePullSecrets", "value": [{"name": "regcred"}]},
            {"op": "add", "path": "/spec/securityContext/seccompProfile", "value": {"type": "RuntimeDefault"}}
        ])
    );
    // The snapshot lists Secrets, and regcred is not among them.
    assert_eq!(
        entry["warnings"],
        json!([
            "kadmit image-pull-secrets: added pull secret regcred does not exist in namespace team; the pod's private image pulls will fail (ImagePullBackOff) until it exists"
        ])
    );
    assert_eq!(
        entry["auditAnnotations"]["security-defaults"],
        "set seccompProfile RuntimeDefault for the pod; allowPrivilegeEscalation false for container web; capabilities.drop [ALL] for container web"
    );

    // Without the security defaults, the same pod is denied by restricted.
    std::fs::write(&config, "securityDefaults: {enabled: false}\n").unwrap();
    let (code, entries, _) = replay_json(
        &[
            "--cluster",
            cluster.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            pod.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, Some(1));
    assert_eq!(entries[0]["allowed"], false);
    assert_eq!(entries[0]["policy"], "pod-security");
}
