//! Fault injection with the live cluster view (issue 9, item 3): the real server (HTTPS, real
//! certificates, a client verifying the CA) wired to `LiveCluster` as `kadmit serve` wires it,
//! with the in-test fake API server (`common::fake_api`) playing kube-apiserver, which hangs,
//! answers 500s, drops watch streams, answers `410 Gone` on re-watch, never answers a
//! SubjectAccessReview, or is unreachable at start.
//!
//! For every fault, each test proves:
//!
//! - a review that needs the faulty cluster state gets its exact answer (per `failure.onError`,
//!   or, where kadmit's upstream-compatible policies fail closed, that denial), never a decision
//!   from a cache kadmit knows is unsynced;
//! - that answer, and every other, arrives before the request's `?timeout=` deadline;
//! - a normal request sent during the fault, one that needs no faulty state, is served;
//! - `/readyz` is not ready exactly while a cache is unsynced (a dropped watch or a re-list
//!   after `410 Gone` does not unsync a cache), ready again once the fault is lifted, and the
//!   review that needed the cluster state is then decided from the API server's data.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fake_api::{
    DEADLINE, FakeApiServer, Recorded, SarAnswer, WatchGone, gmsa_spec, limit_range, namespace,
    write_kubeconfig,
};
use common::{TestOptions, TestServer, post_json};
use kadmit::cluster::LiveCluster;
use kadmit::cluster::live::{AuthorizerSettings, Caches, client_from_kubeconfig};
use kadmit::core::Config;
use kadmit::core::config::OnError;
use kadmit::server::state::Readiness;
use serde_json::{Value, json};

/// The namespace whose state the reviews need: Pod Security `baseline`, so an admitted pod's
/// answer shows the label was read.
const NS: &str = "team-a";
/// A namespace exempt from Pod Security: its pods need no cluster state on `/validate`.
const EXEMPT_NS: &str = "kube-system";
/// The `?timeout=` every review is sent with.
const TIMEOUT: Duration = Duration::from_secs(2);
/// The GMSACredentialSpec the GMSA pods name.
const CREDSPEC: &str = "webapp1";
/// What `/readyz` answers while a cache is unsynced.
const NOT_SYNCED: &str = "not ready: cluster caches are not synced yet\n";

/// The configuration under test: the defaults (Pod Security, GMSA, LimitRange defaults), with
/// one namespace exempt from Pod Security and `failure.onError` as given.
fn config(on_error: OnError) -> Config {
    let mut config = Config::from_yaml(&format!(
        "podSecurity:\n  exemptions: {{namespaces: [{EXEMPT_NS}]}}\n"
    ))
    .unwrap();
    config.failure.on_error = on_error;
    config
}

/// `team-a`, enforcing Pod Security `baseline`.
fn team_a(resource_version: &str) -> k8s_openapi::api::core::v1::Namespace {
    namespace(
        NS,
        resource_version,
        &[("pod-security.kubernetes.io/enforce", "baseline")],
    )
}

/// The GMSACredentialSpec's `credspec`.
fn credspec() -> Value {
    json!({
        "CmsPlugins": ["ActiveDirectory"],
        "DomainJoinConfig": {"DnsName": "contoso.com", "GMSA": "WebApp1"},
    })
}

/// The contents kadmit inlines for [`credspec`] (Go's JSON: keys sorted, no spaces).
const CONTENTS: &str = r#"{"CmsPlugins":["ActiveDirectory"],"DomainJoinConfig":{"DnsName":"contoso.com","GMSA":"WebApp1"}}"#;

/// The server wired to a live view of the API server `kubeconfig` points at, as `kadmit serve`
/// wires it: the caches the configuration reads, `/readyz` following their sync.
async fn start_kadmit(
    kubeconfig: &Path,
    config: Config,
    authorizer: AuthorizerSettings,
) -> TestServer {
    let client = client_from_kubeconfig(Some(kubeconfig)).await.unwrap();
    let live = LiveCluster::start_with_caches(client, Caches::for_config(&config), authorizer);
    let synced = live.clone();
    TestServer::start(TestOptions {
        config,
        cluster: Arc::new(live),
        readiness: Readiness::new(Arc::new(move || synced.is_synced())),
        ..TestOptions::default()
    })
    .await
}

/// A CREATE review of a pod `web` in `namespace`, with `spec`.
fn review(uid: &str, namespace: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "name": "web",
            "operation": "CREATE",
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "web", "namespace": namespace},
                "spec": spec,
            },
        }
    })
}

/// One container `app`, nothing else: Pod Security baseline allows it.
fn plain_spec() -> Value {
    json!({"containers": [{"name": "app", "image": "nginx"}]})
}

/// A pod spec using [`CREDSPEC`] at pod level, with the contents given or not.
fn gmsa_spec_of(contents: Option<&str>) -> Value {
    let mut options = json!({"gmsaCredentialSpecName": CREDSPEC});
    if let Some(contents) = contents {
        options["gmsaCredentialSpec"] = json!(contents);
    }
    json!({
        "serviceAccountName": "webapp",
        "securityContext": {"windowsOptions": options},
        "containers": [{"name": "app", "image": "mcr.microsoft.com/windows/nanoserver"}],
    })
}

/// An answer: the AdmissionReview `response`.
struct Answer {
    response: Value,
}

impl Answer {
    fn patch(&self) -> Vec<Value> {
        common::admission::patch_ops(&self.response)
    }

    fn warnings(&self) -> Vec<String> {
        self.response
            .get("warnings")
            .map(|w| serde_json::from_value(w.clone()).unwrap())
            .unwrap_or_default()
    }
}

/// Sends `review` to `endpoint` with `?timeout=2s`: the answer must be a 200 AdmissionReview
/// for the review's uid, and arrive before the timeout.
async fn send(server: &TestServer, endpoint: &str, review: &Value) -> Answer {
    let client = server.client();
    let url = server.url(&format!(
        "{endpoint}?timeout={}",
        humantime::format_duration(TIMEOUT)
    ));
    let started = Instant::now();
    let (status, answer) = post_json(&client, &url, review).await;
    let elapsed = started.elapsed();
    assert_eq!(status, 200, "{endpoint}: {answer}");
    assert_eq!(
        answer["response"]["uid"], review["request"]["uid"],
        "{endpoint}: {answer}"
    );
    assert!(
        elapsed < TIMEOUT,
        "{endpoint} answered after {elapsed:?}, past the request's timeout {TIMEOUT:?}: {answer}"
    );
    Answer {
        response: answer["response"].clone(),
    }
}

/// The answer per `failure.onError` for `policy`, which could not decide because of `cause`:
/// denied with 500 and the cause, or allowed with a warning saying the same; nothing patched.
#[track_caller]
fn assert_per_on_error(answer: &Answer, on_error: OnError, policy: &str, cause: &str) {
    let response = &answer.response;
    assert!(response.get("patch").is_none(), "{response}");
    match on_error {
        OnError::Deny => {
            assert_eq!(response["allowed"], false, "{response}");
            assert_eq!(
                response["status"],
                json!({
                    "status": "Failure",
                    "code": 500,
                    "reason": "InternalError",
                    "message": format!(
                        "kadmit policy {policy} could not decide: {cause} (failure.onError: deny)"
                    ),
                }),
                "{response}"
            );
            assert_eq!(answer.warnings(), Vec::<String>::new(), "{response}");
        }
        OnError::Allow => {
            assert_eq!(response["allowed"], true, "{response}");
            assert!(response.get("status").is_none(), "{response}");
            assert_eq!(
                answer.warnings(),
                [format!(
                    "kadmit policy {policy} could not decide: {cause}; allowed (failure.onError: allow)"
                )],
                "{response}"
            );
        }
    }
}

/// The cause default-resources gives while the LimitRange cache is unsynced.
const LIMIT_RANGES_NOT_SYNCED: &str = "the limitranges cache is not synced with the API server yet";

/// Pod Security's answer while the namespace cache is unsynced, whatever `failure.onError`
/// says: upstream's fail-closed namespace lookup error (`../shared/spec/pod-security.md` §4.3
/// step 3), never an evaluation against a namespace taken as unlabelled.
#[track_caller]
fn assert_namespace_lookup_failed(answer: &Answer) {
    let response = &answer.response;
    assert_eq!(response["allowed"], false, "{response}");
    assert_eq!(
        response["status"],
        json!({
            "status": "Failure",
            "code": 500,
            "reason": "InternalError",
            "message": format!("Internal error occurred: failed to lookup namespace \"{NS}\""),
        }),
        "{response}"
    );
    assert_eq!(
        response["auditAnnotations"]["error"],
        "the namespaces cache is not synced with the API server yet",
        "{response}"
    );
}

/// GMSA's answer on `/mutate` while the spec cache is unsynced, whatever `failure.onError`
/// says: upstream's denial for a spec it cannot get (`../shared/spec/gmsa.md` §2), never "does
/// not exist" and never a pod admitted without its contents.
#[track_caller]
fn assert_spec_lookup_failed(answer: &Answer) {
    let response = &answer.response;
    assert_eq!(response["allowed"], false, "{response}");
    assert!(response.get("patch").is_none(), "{response}");
    assert_eq!(
        response["status"],
        json!({
            "status": "Failure",
            "code": 500,
            "message": format!(
                "unable to retrieve the contents of cred spec {CREDSPEC}: the \
                 gmsacredentialspecs cache is not synced with the API server yet"
            ),
        }),
        "{response}"
    );
}

/// The patch the LimitRange [`limit_range`]`(NS, .., cpu)` makes to [`plain_spec`]'s pod.
fn limit_range_patch(cpu: &str) -> Vec<Value> {
    vec![
        json!({
            "op": "add",
            "path": "/metadata/annotations",
            "value": {"kubernetes.io/limit-ranger":
                "LimitRanger plugin set: cpu request for container app; cpu limit for container app"},
        }),
        json!({
            "op": "add",
            "path": "/spec/containers/0/resources",
            "value": {"limits": {"cpu": cpu}, "requests": {"cpu": cpu}},
        }),
    ]
}

/// `/mutate` of a plain pod in `team-a`, decided from the LimitRange data: allowed, with the
/// LimitRange's default CPU `cpu` in the patch.
async fn assert_limit_range_applied(server: &TestServer, uid: &str, cpu: &str) {
    let answer = send(server, "/mutate", &review(uid, NS, plain_spec())).await;
    assert_eq!(answer.response["allowed"], true, "{}", answer.response);
    assert_eq!(
        answer.patch(),
        limit_range_patch(cpu),
        "{}",
        answer.response
    );
}

/// Sends `/mutate` of a plain pod in `team-a` until its patch sets the default CPU `cpu` (a
/// watch event or a re-list reached the cache), failing at [`DEADLINE`].
async fn wait_for_limit_range(server: &TestServer, cpu: &str) {
    let deadline = Instant::now() + DEADLINE;
    let expected = limit_range_patch(cpu);
    loop {
        let answer = send(server, "/mutate", &review("poll", NS, plain_spec())).await;
        assert_eq!(answer.response["allowed"], true, "{}", answer.response);
        if answer.patch() == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the default CPU never became {cpu}: {}",
            answer.response
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// While no cache has synced: the LimitRange defaults answered per `on_error`, Pod Security
/// and GMSA failing closed on their lookups, and a pod needing no cluster state served.
async fn assert_unsynced_answers(server: &TestServer, on_error: OnError) {
    let answer = send(server, "/mutate", &review("m-1", NS, plain_spec())).await;
    assert_per_on_error(
        &answer,
        on_error,
        "default-resources",
        LIMIT_RANGES_NOT_SYNCED,
    );
    let answer = send(server, "/validate", &review("v-1", NS, plain_spec())).await;
    assert_namespace_lookup_failed(&answer);
    let answer = send(server, "/mutate", &review("g-1", NS, gmsa_spec_of(None))).await;
    assert_spec_lookup_failed(&answer);
    assert_exempt_pod_served(server, "normal-1").await;
}

/// A normal request that needs no cluster state: `/validate` of a pod in the namespace exempt
/// from Pod Security. Served: allowed, for its uid, exempt.
async fn assert_exempt_pod_served(server: &TestServer, uid: &str) {
    let answer = send(server, "/validate", &review(uid, EXEMPT_NS, plain_spec())).await;
    let response = &answer.response;
    assert_eq!(response["allowed"], true, "{response}");
    assert_eq!(response["uid"], uid, "{response}");
    assert_eq!(
        response["auditAnnotations"],
        json!({"exempt": "namespace"}),
        "{response}"
    );
}

/// A normal request while only the LimitRange (or authorizer) side is faulty: `/validate` of a
/// plain pod in `team-a` with the namespace cache synced. Served: allowed, for its uid, judged
/// at the namespace's `baseline` level read from the cache.
async fn assert_plain_pod_served(server: &TestServer, uid: &str) {
    let answer = send(server, "/validate", &review(uid, NS, plain_spec())).await;
    let response = &answer.response;
    assert_eq!(response["allowed"], true, "{response}");
    assert_eq!(response["uid"], uid, "{response}");
    assert!(response.get("warnings").is_none(), "{response}");
    assert_eq!(
        response["auditAnnotations"],
        json!({"enforce-policy": "baseline:latest"}),
        "{response}"
    );
}

/// `GET http://<metrics_addr><path>`: status and body.
async fn probe(server: &TestServer, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("http://{}{path}", server.metrics_addr))
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[track_caller]
fn assert_probe(probe: (u16, String), status: u16, body: &str, what: &str) {
    assert_eq!(probe, (status, body.to_owned()), "{what}");
}

/// Liveness does not depend on the cluster; readiness says the caches are not synced.
async fn assert_alive_not_ready(server: &TestServer) {
    assert_probe(probe(server, "/healthz").await, 200, "ok\n", "/healthz");
    assert_probe(
        probe(server, "/readyz").await,
        503,
        NOT_SYNCED,
        "/readyz while a cache is unsynced",
    );
}

async fn assert_ready(server: &TestServer, what: &str) {
    assert_probe(probe(server, "/readyz").await, 200, "ok\n", what);
}

/// Polls `/readyz` until it answers 200 `ok` (it may answer only that or "not synced"),
/// failing at [`DEADLINE`].
async fn wait_ready(server: &TestServer) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (status, body) = probe(server, "/readyz").await;
        if status == 200 {
            assert_eq!(body, "ok\n");
            return;
        }
        assert_eq!((status, body.as_str()), (503, NOT_SYNCED));
        assert!(
            Instant::now() < deadline,
            "/readyz still not ready {DEADLINE:?} after the fault was lifted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The fake API server's data: `team-a`, a LimitRange there defaulting CPU to 500m, the GMSA
/// spec; `hold` holds every list kadmit makes.
async fn fake_api(hold: bool) -> FakeApiServer {
    let api = FakeApiServer::start("100", vec![team_a("90")], hold).await;
    populate(&api, hold);
    api
}

/// Gives `api` the LimitRange and the GMSA spec; with `hold`, holds the lists of every
/// collection but namespaces (whose hold [`FakeApiServer::start`] sets).
fn populate(api: &FakeApiServer, hold: bool) {
    api.limit_ranges()
        .set_list("600", vec![limit_range(NS, "defaults", "590", "500m")]);
    api.gmsa_specs()
        .set_list("300", vec![gmsa_spec(CREDSPEC, "290", credspec())]);
    if hold {
        api.pods().hold_list();
        api.gmsa_specs().hold_list();
        api.limit_ranges().hold_list();
    }
}

/// Fault 1: the API server hangs on the initial lists. Not ready; a pod needing LimitRanges is
/// answered per `failure.onError`, one needing its namespace or a GMSA spec is denied as
/// upstream does (fail closed), all before the deadline; a pod of an exempt namespace is
/// served. Once the lists are answered: ready, and decided from the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_hanging_on_the_initial_lists() {
    for on_error in [OnError::Deny, OnError::Allow] {
        let api = fake_api(true).await;
        let server = start_kadmit(
            api.kubeconfig(),
            config(on_error),
            AuthorizerSettings::default(),
        )
        .await;
        // Every list is in flight and held.
        api.namespaces()
            .wait_for_request(1, |r| !r.is_watch())
            .await;
        api.pods().wait_for_request(1, |r| !r.is_watch()).await;
        api.gmsa_specs()
            .wait_for_request(1, |r| !r.is_watch())
            .await;
        api.limit_ranges()
            .wait_for_request(1, |r| !r.is_watch())
            .await;
        assert_alive_not_ready(&server).await;

        assert_unsynced_answers(&server, on_error).await;
        assert_eq!(
            api.authorizer().calls(),
            0,
            "no SubjectAccessReview was needed"
        );
        assert_alive_not_ready(&server).await;

        // The API server answers: ready, and the same reviews are decided from its data.
        api.namespaces().release_list();
        api.pods().release_list();
        api.gmsa_specs().release_list();
        api.limit_ranges().release_list();
        wait_ready(&server).await;
        assert_limit_range_applied(&server, "m-2", "500m").await;
        assert_plain_pod_served(&server, "v-2").await;
        let answer = send(&server, "/mutate", &review("g-2", NS, gmsa_spec_of(None))).await;
        assert_eq!(answer.response["allowed"], true, "{}", answer.response);
        let patch = answer.patch();
        assert_eq!(
            patch[0],
            json!({
                "op": "add",
                "path": "/spec/securityContext/windowsOptions/gmsaCredentialSpec",
                "value": CONTENTS,
            }),
            "{}",
            answer.response
        );
        assert_eq!(patch[1..], limit_range_patch("500m"), "{}", answer.response);
        server.stop().await;
    }
}

/// Fault 1 bis: the API server never answers the SubjectAccessReview GMSA needs. `/validate`
/// is answered per `failure.onError` before the deadline; meanwhile other reviews are served
/// and readiness (which no SubjectAccessReview affects) stays ready. Once the API server
/// answers again (the hung review ended by the authorizer's own timeout), the same pod is
/// authorized and its contents checked against the spec.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_hanging_on_a_subject_access_review() {
    for on_error in [OnError::Deny, OnError::Allow] {
        let api = fake_api(false).await;
        // Longer than the request's timeout, so the request's deadline is what bounds it.
        let authorizer = AuthorizerSettings {
            request_timeout: Duration::from_secs(3),
            ..AuthorizerSettings::default()
        };
        let server = start_kadmit(api.kubeconfig(), config(on_error), authorizer).await;
        wait_ready(&server).await;
        api.authorizer().set_answer(SarAnswer {
            hang: true,
            ..SarAnswer::allow("")
        });

        let pod = review("g-1", NS, gmsa_spec_of(Some(CONTENTS)));
        let hanging = tokio::spawn({
            let url = server.url("/validate?timeout=2s");
            let client = server.client();
            let pod = pod.clone();
            async move {
                let started = Instant::now();
                let (status, answer) = post_json(&client, &url, &pod).await;
                (status, answer, started.elapsed())
            }
        });
        // While the review hangs at the API server: other reviews are served, still ready.
        api.authorizer().wait_for_calls(1).await;
        assert_plain_pod_served(&server, "normal-1").await;
        assert_limit_range_applied(&server, "m-1", "500m").await;
        assert_ready(
            &server,
            "a hanging SubjectAccessReview does not unsync a cache",
        )
        .await;

        let (status, answer, elapsed) = hanging.await.unwrap();
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["response"]["uid"], "g-1", "{answer}");
        assert!(
            elapsed < TIMEOUT,
            "answered after {elapsed:?}, past the request's timeout {TIMEOUT:?}: {answer}"
        );
        let answer = Answer {
            response: answer["response"].clone(),
        };
        // The request's deadline and the authorizer's wait (bounded by the same deadline) end
        // together; either may be the one that reports it.
        let by_deadline = format!(
            "it did not finish before the request's deadline (timeout {})",
            humantime::format_duration(TIMEOUT)
        );
        let by_authorizer = "error when checking authz access: timed out waiting for the API \
                             server to answer the SubjectAccessReview";
        let message = match on_error {
            OnError::Deny => answer.response["status"]["message"].as_str(),
            OnError::Allow => answer.response["warnings"][0].as_str(),
        }
        .unwrap_or_default();
        let cause = if message.contains("did not finish") {
            by_deadline.as_str()
        } else {
            by_authorizer
        };
        assert_per_on_error(&answer, on_error, "gmsa", cause);
        assert_eq!(api.authorizer().calls(), 1);

        // The API server answers again: once the hung review has timed out (errors are not
        // cached), the same question is asked again and the pod is decided from the answer and
        // the spec.
        api.authorizer()
            .set_answer(SarAnswer::allow("granted by a RoleBinding"));
        let deadline = Instant::now() + DEADLINE;
        loop {
            let answer = send(&server, "/validate", &pod).await;
            if answer.response["allowed"] == true && answer.response.get("warnings").is_none() {
                assert!(
                    answer.response.get("status").is_none(),
                    "{}",
                    answer.response
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "never authorized again: {}",
                answer.response
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(api.authorizer().calls(), 2);
        // Decided from the spec: other contents are refused.
        let other = review(
            "g-3",
            NS,
            gmsa_spec_of(Some(r#"{"CmsPlugins":["ActiveDirectory"]}"#)),
        );
        let answer = send(&server, "/validate", &other).await;
        assert_eq!(answer.response["allowed"], false, "{}", answer.response);
        assert_eq!(
            answer.response["status"]["code"], 422,
            "{}",
            answer.response
        );
        assert_eq!(
            answer.response["status"]["message"],
            format!(
                "the GMSA cred spec contents for pod \"web\" does not match the contents of GMSA \
                 resource \"{CREDSPEC}\""
            ),
            "{}",
            answer.response
        );
        server.stop().await;
    }
}

/// Fault 2: the API server answers the LimitRange list with 500s, then recovers. Meanwhile:
/// not ready, a pod needing LimitRanges answered per `failure.onError` before the deadline, a
/// plain pod (its namespace synced) served; the list is retried. After: ready, and the
/// LimitRange's defaults are applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_answering_500_then_recovering() {
    for on_error in [OnError::Deny, OnError::Allow] {
        let api = fake_api(false).await;
        api.limit_ranges().set_failure(Some(500));
        let server = start_kadmit(
            api.kubeconfig(),
            config(on_error),
            AuthorizerSettings::default(),
        )
        .await;
        // The namespace cache syncs; the LimitRange list fails and is retried.
        api.namespaces()
            .wait_for_request(1, Recorded::is_watch)
            .await;
        api.limit_ranges()
            .wait_for_request(2, |r| !r.is_watch())
            .await;
        assert_alive_not_ready(&server).await;

        let answer = send(&server, "/mutate", &review("m-1", NS, plain_spec())).await;
        assert_per_on_error(
            &answer,
            on_error,
            "default-resources",
            LIMIT_RANGES_NOT_SYNCED,
        );
        assert_plain_pod_served(&server, "normal-1").await;
        assert_exempt_pod_served(&server, "normal-2").await;
        assert!(
            api.limit_ranges().requests().iter().all(|r| !r.is_watch()),
            "watched before a list succeeded: {:?}",
            api.limit_ranges().requests()
        );
        assert_alive_not_ready(&server).await;

        api.limit_ranges().set_failure(None);
        wait_ready(&server).await;
        assert_limit_range_applied(&server, "m-2", "500m").await;
        server.stop().await;
    }
}

/// Fault 3: the API server drops the watch streams after sync, once cleanly and once with the
/// re-watches failing for a while. The cache stays synced (a dropped watch is not a lost list):
/// still ready, decisions from the last data it holds, normal reviews served. Each watch
/// resumes from the last resourceVersion seen, without a re-list, and events sent after the
/// drop reach the decisions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_watches_resume() {
    let api = fake_api(false).await;
    let server = start_kadmit(
        api.kubeconfig(),
        config(OnError::Deny),
        AuthorizerSettings::default(),
    )
    .await;
    wait_ready(&server).await;
    let limit_ranges = api.limit_ranges();
    limit_ranges.wait_for_request(1, Recorded::is_watch).await;
    assert_limit_range_applied(&server, "m-1", "500m").await;

    // Dropped: re-watched at once from the list's resourceVersion.
    limit_ranges.close_watches();
    assert_ready(&server, "ready right after the watch dropped").await;
    let rewatch = limit_ranges.wait_for_request(2, Recorded::is_watch).await;
    assert_eq!(rewatch.param("resourceVersion"), Some("600"));
    limit_ranges
        .send_event(
            "MODIFIED",
            serde_json::to_value(limit_range(NS, "defaults", "610", "750m")).unwrap(),
        )
        .await;
    wait_for_limit_range(&server, "750m").await;
    assert_ready(&server, "ready after the watch resumed").await;

    // Dropped, and the re-watches fail for a while: the cache keeps its data and its sync.
    limit_ranges.set_failure(Some(500));
    limit_ranges.close_watches();
    limit_ranges.wait_for_request(4, Recorded::is_watch).await;
    assert_ready(&server, "a dropped watch does not unsync the cache").await;
    assert_limit_range_applied(&server, "m-2", "750m").await;
    assert_plain_pod_served(&server, "normal-1").await;
    assert_exempt_pod_served(&server, "normal-2").await;

    limit_ranges.set_failure(None);
    limit_ranges
        .send_event(
            "MODIFIED",
            serde_json::to_value(limit_range(NS, "defaults", "620", "1")).unwrap(),
        )
        .await;
    wait_for_limit_range(&server, "1").await;
    assert_ready(&server, "ready after the watch resumed").await;
    let requests = limit_ranges.requests();
    let lists = requests.iter().filter(|r| !r.is_watch()).count();
    assert_eq!(lists, 1, "re-listed after a dropped watch: {requests:?}");
    let rewatches: Vec<_> = requests
        .iter()
        .filter(|r| r.is_watch())
        .skip(2)
        .map(|r| r.param("resourceVersion"))
        .collect();
    assert!(
        rewatches.len() >= 3 && rewatches.iter().all(|rv| *rv == Some("610")),
        "every re-watch resumes from the last event seen: {requests:?}"
    );
    server.stop().await;
}

/// Fault 4: after sync, the watch drops and the API server's history no longer reaches its
/// resourceVersion: the re-watch is answered `410 Gone` (as an HTTP status, and as kube-apiserver
/// sends it, an `ERROR` event). kadmit re-lists; while the re-list is held the cache keeps its
/// last complete list (still synced, still ready) and normal reviews are served; then the
/// changes only the re-list shows are reflected, and the watch continues from the new list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_on_rewatch_relists() {
    for how in [WatchGone::Status, WatchGone::Event] {
        let api = fake_api(false).await;
        let server = start_kadmit(
            api.kubeconfig(),
            config(OnError::Deny),
            AuthorizerSettings::default(),
        )
        .await;
        wait_ready(&server).await;
        let limit_ranges = api.limit_ranges();
        limit_ranges.wait_for_request(1, Recorded::is_watch).await;
        assert_limit_range_applied(&server, "m-1", "500m").await;

        // Changed while the watch was down, and compacted: only a re-list shows it.
        limit_ranges.hold_list();
        limit_ranges.set_list("700", vec![limit_range(NS, "defaults", "690", "2")]);
        limit_ranges.expire_watches_before("700", how);
        limit_ranges.close_watches();
        let rewatch = limit_ranges.wait_for_request(2, Recorded::is_watch).await;
        assert_eq!(rewatch.param("resourceVersion"), Some("600"), "{how:?}");
        limit_ranges.wait_for_request(2, |r| !r.is_watch()).await;

        // The re-list is held: the last complete list still answers.
        assert_ready(&server, "a re-list does not unsync the cache").await;
        assert_limit_range_applied(&server, "m-2", "500m").await;
        assert_plain_pod_served(&server, "normal-1").await;
        assert_exempt_pod_served(&server, "normal-2").await;

        limit_ranges.release_list();
        wait_for_limit_range(&server, "2").await;
        assert_ready(&server, "ready after the re-list").await;
        let watch = limit_ranges.wait_for_request(3, Recorded::is_watch).await;
        assert_eq!(watch.param("resourceVersion"), Some("700"), "{how:?}");
        server.stop().await;
    }
}

/// Fault 5: the API server is unreachable at start (its port refuses connections). The server
/// starts and is alive but not ready; a pod needing LimitRanges is answered per
/// `failure.onError`, one needing its namespace denied as upstream does, before the deadline;
/// a pod of an exempt namespace is served. Once the API server comes up on that port: ready,
/// and decided from its data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_unreachable_at_start() {
    for on_error in [OnError::Deny, OnError::Allow] {
        // A port nothing listens on: connections to it are refused.
        let port = {
            let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            reserved.local_addr().unwrap().port()
        };
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        write_kubeconfig(&kubeconfig, port);
        let server =
            start_kadmit(&kubeconfig, config(on_error), AuthorizerSettings::default()).await;

        assert_alive_not_ready(&server).await;
        assert_unsynced_answers(&server, on_error).await;
        assert_alive_not_ready(&server).await;

        // The API server comes up on the port the kubeconfig names.
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("port {port} was taken meanwhile: {e}"));
        let api = FakeApiServer::start_on(listener, "100", vec![team_a("90")], false, |api| {
            populate(api, false);
        });
        wait_ready(&server).await;
        assert_limit_range_applied(&server, "m-2", "500m").await;
        assert_plain_pod_served(&server, "v-2").await;
        api.namespaces()
            .wait_for_request(1, |r| !r.is_watch())
            .await;
        server.stop().await;
    }
}
