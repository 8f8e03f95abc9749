//! The live cluster view's authorizer against an in-test fake API server: the
//! LocalSubjectAccessReview it posts, allowed and denied answers, caching by TTL, one request
//! for concurrent identical questions, errors, and the caller's deadline, called from blocking
//! threads as the server's pipeline does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::fake_api::{DEADLINE, FakeApiServer, SarAnswer};
use kadmit::cluster::LiveCluster;
use kadmit::cluster::live::{AuthorizerSettings, client_from_kubeconfig};
use kadmit_core::cluster::{AccessDecision, AccessRequest};
use kadmit_core::{ClusterError, ClusterView};
use serde_json::json;

/// How late past its deadline a call may return: scheduling and waking up, on a slow machine.
const SLACK: Duration = Duration::from_millis(250);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "kadmit=debug".into()),
        )
        .try_init();
}

async fn live_cluster(server: &FakeApiServer, settings: AuthorizerSettings) -> LiveCluster {
    let client = client_from_kubeconfig(Some(server.kubeconfig()))
        .await
        .unwrap();
    LiveCluster::start_with(client, settings)
}

/// Asks from a blocking-pool thread, as the server's pipeline calls policies.
async fn authorize(
    view: &LiveCluster,
    request: &AccessRequest,
    deadline: Option<Instant>,
) -> Result<AccessDecision, ClusterError> {
    let view = view.clone();
    let request = request.clone();
    tokio::task::spawn_blocking(move || view.authorize(&request, deadline))
        .await
        .unwrap()
}

fn soon() -> Option<Instant> {
    Some(Instant::now() + DEADLINE)
}

fn allowed(reason: &str) -> AccessDecision {
    AccessDecision {
        allowed: true,
        reason: reason.to_owned(),
    }
}

fn denied(reason: &str) -> AccessDecision {
    AccessDecision {
        allowed: false,
        reason: reason.to_owned(),
    }
}

fn unavailable_message(result: Result<AccessDecision, ClusterError>) -> String {
    match result {
        Err(ClusterError::Unavailable(message)) => message,
        other => panic!("expected ClusterError::Unavailable, got {other:?}"),
    }
}

#[test]
fn default_settings_are_documented_values() {
    let settings = AuthorizerSettings::default();
    assert_eq!(settings.allowed_ttl, Duration::from_secs(30));
    assert_eq!(settings.denied_ttl, Duration::from_secs(5));
    assert_eq!(settings.max_entries, 10_000);
    assert_eq!(settings.request_timeout, Duration::from_secs(10));
}

#[tokio::test]
async fn posts_the_upstream_review_and_caches_an_allowed_answer() {
    init_tracing();
    let server = FakeApiServer::start("100", vec![], false).await;
    server.authorizer().set_answer(SarAnswer::allow(
        "RBAC: allowed by RoleBinding \"use-gmsa/apps\"",
    ));
    let view = live_cluster(&server, AuthorizerSettings::default()).await;
    let request = AccessRequest::use_gmsa("apps", "web", "webapp1");

    assert_eq!(
        authorize(&view, &request, soon()).await.unwrap(),
        allowed("RBAC: allowed by RoleBinding \"use-gmsa/apps\"")
    );
    let reviews = server.authorizer().reviews();
    assert_eq!(reviews.len(), 1);
    assert_eq!(reviews[0].namespace, "apps");
    let body = &reviews[0].body;
    assert_eq!(body["apiVersion"], "authorization.k8s.io/v1");
    assert_eq!(body["kind"], "LocalSubjectAccessReview");
    assert_eq!(body["metadata"]["namespace"], "apps");
    assert_eq!(
        body["spec"],
        json!({
            "user": "system:serviceaccount:apps:web",
            "groups": ["system:serviceaccounts", "system:serviceaccounts:apps"],
            "resourceAttributes": {
                "namespace": "apps",
                "verb": "use",
                "group": "windows.k8s.io",
                "version": "v1",
                "resource": "gmsacredentialspecs",
                "name": "webapp1",
            },
        })
    );

    // The same question again is answered from the cache, even when the API server would now
    // say otherwise; so is a clone of the view.
    server.authorizer().set_answer(SarAnswer::deny("revoked"));
    assert_eq!(
        authorize(&view, &request, soon()).await.unwrap(),
        allowed("RBAC: allowed by RoleBinding \"use-gmsa/apps\"")
    );
    assert!(
        authorize(&view.clone(), &request, soon())
            .await
            .unwrap()
            .allowed
    );
    assert_eq!(server.authorizer().calls(), 1);

    // A different question (another spec, another service account) is asked.
    let other = AccessRequest::use_gmsa("apps", "web", "webapp2");
    assert_eq!(
        authorize(&view, &other, soon()).await.unwrap(),
        denied("revoked")
    );
    let other_sa = AccessRequest::use_gmsa("apps", "batch", "webapp1");
    assert_eq!(
        authorize(&view, &other_sa, soon()).await.unwrap(),
        denied("revoked")
    );
    assert_eq!(server.authorizer().calls(), 3);
}

#[tokio::test]
async fn a_denial_carries_its_reason_and_an_explicit_deny_wins() {
    init_tracing();
    let server = FakeApiServer::start("100", vec![], false).await;
    let view = live_cluster(&server, AuthorizerSettings::default()).await;

    server.authorizer().set_answer(SarAnswer::deny(""));
    assert_eq!(
        authorize(&view, &AccessRequest::use_gmsa("apps", "web", "a"), soon())
            .await
            .unwrap(),
        denied("")
    );

    server
        .authorizer()
        .set_answer(SarAnswer::deny("no RBAC policy matched"));
    assert_eq!(
        authorize(&view, &AccessRequest::use_gmsa("apps", "web", "b"), soon())
            .await
            .unwrap(),
        denied("no RBAC policy matched")
    );

    // `allowed && !denied`: an explicit denial overrides an allowed flag.
    server.authorizer().set_answer(SarAnswer {
        denied: true,
        ..SarAnswer::allow("denied by a webhook authorizer")
    });
    assert_eq!(
        authorize(&view, &AccessRequest::use_gmsa("apps", "web", "c"), soon())
            .await
            .unwrap(),
        denied("denied by a webhook authorizer")
    );
    assert_eq!(server.authorizer().calls(), 3);
}

#[tokio::test]
async fn answers_expire_after_their_ttl_and_denials_sooner() {
    init_tracing();
    let server = FakeApiServer::start("100", vec![], false).await;
    let view = live_cluster(
        &server,
        AuthorizerSettings {
            allowed_ttl: Duration::from_secs(3600),
            denied_ttl: Duration::from_millis(300),
            ..AuthorizerSettings::default()
        },
    )
    .await;
    let may = AccessRequest::use_gmsa("apps", "web", "webapp1");
    let may_not = AccessRequest::use_gmsa("apps", "web", "webapp2");

    server.authorizer().set_answer(SarAnswer::allow(""));
    assert!(authorize(&view, &may, soon()).await.unwrap().allowed);
    server.authorizer().set_answer(SarAnswer::deny("not yet"));
    assert_eq!(
        authorize(&view, &may_not, soon()).await.unwrap(),
        denied("not yet")
    );
    assert_eq!(
        authorize(&view, &may_not, soon()).await.unwrap(),
        denied("not yet")
    );
    assert_eq!(server.authorizer().calls(), 2, "both answers are cached");

    // The permission is granted; once the denial expires, the question is asked again.
    server.authorizer().set_answer(SarAnswer::allow("granted"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        authorize(&view, &may_not, soon()).await.unwrap(),
        allowed("granted")
    );
    assert_eq!(server.authorizer().calls(), 3);
    // The allowed answer has a long TTL: still cached, no new review.
    assert!(authorize(&view, &may, soon()).await.unwrap().allowed);
    assert_eq!(server.authorizer().calls(), 3);

    // And an allowed answer expires too.
    let short = live_cluster(
        &server,
        AuthorizerSettings {
            allowed_ttl: Duration::from_millis(300),
            ..AuthorizerSettings::default()
        },
    )
    .await;
    assert!(authorize(&short, &may, soon()).await.unwrap().allowed);
    assert!(authorize(&short, &may, soon()).await.unwrap().allowed);
    assert_eq!(server.authorizer().calls(), 4);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(authorize(&short, &may, soon()).await.unwrap().allowed);
    assert_eq!(server.authorizer().calls(), 5);
}

#[tokio::test]
async fn a_zero_ttl_or_capacity_disables_caching() {
    init_tracing();
    let server = FakeApiServer::start("100", vec![], false).await;
    let request = AccessRequest::use_gmsa("apps", "web", "webapp1");
    for settings in [
        AuthorizerSettings {
            allowed_ttl: Duration::ZERO,
            ..AuthorizerSettings::default()
        },
        AuthorizerSettings {
            max_entries: 0,
            ..AuthorizerSettings::default()
        },
    ] {
        let before = server.authorizer().calls();
        let view = live_cluster(&server, settings).await;
        assert!(authorize(&view, &request, soon()).await.unwrap().allowed);
        assert!(authorize(&view, &request, soon()).await.unwrap().allowed);
        assert_eq!(server.authorizer().calls(), before + 2);
    }
}

#[tokio::test]
async fn the_cache_is_bounded() {
    init_tracing();
    let server = FakeApiServer::start("100", vec![], false).await;
    let view = live_cluster(
        &server,
        AuthorizerSettings {
            max_entries: 2,
            ..AuthorizerSettings::default()
        },
    )
    .await;
    let question = |name: &str| AccessRequest::use_gmsa("apps", "web", name);
    for name in ["a", "b", "c"] {
        authorize(&view, &question(name), soon()).await.unwrap();
    }
    assert_eq!(server.authorizer().calls(), 3);
    // "c" and "b" are kept; "a", closest to expiring, was evicted to make room.
    authorize(&view, &question("c"), soon()).await.unwrap();
    authorize(&view, &question("b"), soon()).await.unwrap();
    assert_eq!(server.authorizer().calls(), 3);
    authorize(&view, &question("a"), soon()).await.unwrap();
    assert_eq!(server.authorizer().calls(), 4);
}

#[tokio::test]
async fn concurrent_identical_questions_are_asked_once() {
    init_tracing();
    let server = FakeApiServer::start("100", vec![], false).await;
    server.authorizer().set_answer(SarAnswer {
        delay: Duration::from_millis(500),
        ..SarAnswer::allow("shared")
    });
    let view = live_cluster(&server, AuthorizerSettings::default()).await;
    let request = AccessRequest::use_gmsa("apps", "web", "webapp1");

    let callers: Vec<_> = (0..20)
        .map(|_| {
            let view = view.clone();
            let request = request.clone();
            tokio::task::spawn_blocking(move || view.authorize(&request, soon()))
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await.unwrap().unwrap(), allowed("shared"));
    }
    assert_eq!(server.authorizer().calls(), 1);

    // A different question during the same wait is not merged with it.
    server.authorizer().set_answer(SarAnswer {
        delay: Duration::from_millis(300),
        ..SarAnswer::deny("separate")
    });
    let a = AccessRequest::use_gmsa("apps", "web", "webapp2");
    let b = AccessRequest::use_gmsa("other", "web", "webapp2");
    let (a, b) = tokio::join!(authorize(&view, &a, soon()), authorize(&view, &b, soon()));
    assert_eq!(a.unwrap(), denied("separate"));
    assert_eq!(b.unwrap(), denied("separate"));
    assert_eq!(server.authorizer().calls(), 3);
}

#[tokio::test]
async fn a_hanging_review_fails_at_the_callers_deadline() {
    init_tracing();
    let server = FakeApiServer::start("100", vec![], false).await;
    server.authorizer().set_answer(SarAnswer {
        hang: true,
        ..SarAnswer::allow("")
    });
    let view = live_cluster(&server, AuthorizerSettings::default()).await;
    let request = AccessRequest::use_gmsa("apps", "web", "webapp1");

    let budget = Duration::from_millis(400);
    let started = Instant::now();
    let result = authorize(&view, &request, Some(started + budget)).await;
    let elapsed = started.elapsed();
    let message = unavailable_message(result);
    assert!(
        message.starts_with("error when checking authz access:") && message.contains("timed out"),
        "{message}"
    );
    assert!(elapsed >= budget, "gave up early, after {elapsed:?}");
    assert!(
        elapsed <= budget + SLACK,
        "returned {elapsed:?} after the call, past its {budget:?} deadline"
    );
    server.authorizer().wait_for_calls(1).await;

    // Callers that join the hung request each give up at their own deadline, and do not ask
    // again meanwhile.
    let started = Instant::now();
    let short = Duration::from_millis(200);
    let long = Duration::from_millis(600);
    let (first, second) = tokio::join!(
        async {
            let result = authorize(&view, &request, Some(started + short)).await;
            (result, started.elapsed())
        },
        async {
            let result = authorize(&view, &request, Some(started + long)).await;
            (result, started.elapsed())
        },
    );
    for ((result, elapsed), budget) in [(first, short), (second, long)] {
        assert!(unavailable_message(result).contains("timed out"));
        assert!(
            elapsed >= budget && elapsed <= budget + SLACK,
            "{elapsed:?} for a {budget:?} deadline"
        );
    }
    assert_eq!(server.authorizer().calls(), 1);

    // A deadline already passed fails at once.
    let started = Instant::now();
    let result = authorize(&view, &request, Some(started)).await;
    assert!(unavailable_message(result).contains("timed out"));
    assert!(started.elapsed() <= SLACK);
}

#[tokio::test]
async fn a_hung_review_ends_at_the_request_timeout_and_is_asked_again() {
    init_tracing();
    let server = FakeApiServer::start("100", vec![], false).await;
    server.authorizer().set_answer(SarAnswer {
        hang: true,
        ..SarAnswer::allow("")
    });
    let timeout = Duration::from_millis(300);
    let view = live_cluster(
        &server,
        AuthorizerSettings {
            request_timeout: timeout,
            ..AuthorizerSettings::default()
        },
    )
    .await;
    let request = AccessRequest::use_gmsa("apps", "web", "webapp1");

    // No deadline: the request timeout bounds the call.
    let started = Instant::now();
    let message = unavailable_message(authorize(&view, &request, None).await);
    let elapsed = started.elapsed();
    assert!(message.contains("timed out"), "{message}");
    assert!(
        elapsed >= timeout && elapsed <= timeout + SLACK,
        "{elapsed:?}"
    );

    // The hung request is over, and its error was not cached: the next call asks again.
    server.authorizer().set_answer(SarAnswer::allow("answered"));
    assert_eq!(
        authorize(&view, &request, soon()).await.unwrap(),
        allowed("answered")
    );
    assert_eq!(server.authorizer().calls(), 2);
}

#[tokio::test]
async fn a_late_answer_still_fills_the_cache() {
    init_tracing();
    let server = FakeApiServer::start("100", vec![], false).await;
    server.authorizer().set_answer(SarAnswer {
        delay: Duration::from_millis(400),
        ..SarAnswer::allow("slow")
    });
    let view = live_cluster(&server, AuthorizerSettings::default()).await;
    let request = AccessRequest::use_gmsa("apps", "web", "webapp1");

    let deadline = Some(Instant::now() + Duration::from_millis(100));
    assert!(unavailable_message(authorize(&view, &request, deadline).await).contains("timed out"));
    // The request went on without the caller; a retry joins it or finds its answer cached.
    assert_eq!(
        authorize(&view, &request, soon()).await.unwrap(),
        allowed("slow")
    );
    assert_eq!(
        authorize(&view, &request, soon()).await.unwrap(),
        allowed("slow")
    );
    assert_eq!(server.authorizer().calls(), 1);
}

#[tokio::test]
async fn api_errors_are_reported_and_not_cached() {
    init_tracing();
    let server = FakeApiServer::start("100", vec![], false).await;
    let view = live_cluster(&server, AuthorizerSettings::default()).await;
    let request = AccessRequest::use_gmsa("apps", "web", "webapp1");

    for (round, code) in [500, 403].into_iter().enumerate() {
        server.authorizer().set_answer(SarAnswer::error(code));
        let message = unavailable_message(authorize(&view, &request, soon()).await);
        assert!(
            message.starts_with("error when checking authz access: "),
            "{message}"
        );
        assert!(
            message.contains(&format!("programmed error {code}")),
            "{message}"
        );
        assert_eq!(server.authorizer().calls(), round + 1);
    }

    server.authorizer().set_answer(SarAnswer::allow(""));
    assert!(authorize(&view, &request, soon()).await.unwrap().allowed);
    assert_eq!(server.authorizer().calls(), 3);
}

#[tokio::test]
async fn a_question_without_a_namespace_is_refused_without_asking() {
    init_tracing();
    let server = FakeApiServer::start("100", vec![], false).await;
    let view = live_cluster(&server, AuthorizerSettings::default()).await;
    let request = AccessRequest {
        namespace: String::new(),
        ..AccessRequest::use_gmsa("", "web", "webapp1")
    };
    let message = unavailable_message(authorize(&view, &request, soon()).await);
    assert!(message.contains("needs a namespace"), "{message}");
    assert_eq!(server.authorizer().calls(), 0);
}

/// On a multi-thread runtime, a call straight from an async task (a worker thread) works: the
/// wait moves the worker's other tasks elsewhere rather than stalling or panicking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_from_a_multi_thread_runtime_worker() {
    init_tracing();
    let server = FakeApiServer::start("100", vec![], false).await;
    server.authorizer().set_answer(SarAnswer {
        delay: Duration::from_millis(100),
        ..SarAnswer::allow("from a worker")
    });
    let view = live_cluster(&server, AuthorizerSettings::default()).await;
    let request = AccessRequest::use_gmsa("apps", "web", "webapp1");
    let on_worker = view.clone();
    let result = tokio::spawn(async move { on_worker.authorize(&request, soon()) })
        .await
        .unwrap();
    assert_eq!(result.unwrap(), allowed("from a worker"));

    // The deadline holds there too.
    server.authorizer().set_answer(SarAnswer {
        hang: true,
        ..SarAnswer::allow("")
    });
    let other = AccessRequest::use_gmsa("apps", "web", "webapp2");
    let budget = Duration::from_millis(300);
    let (result, elapsed) = tokio::spawn(async move {
        let started = Instant::now();
        let result = view.authorize(&other, Some(started + budget));
        (result, started.elapsed())
    })
    .await
    .unwrap();
    assert!(unavailable_message(result).contains("timed out"));
    assert!(
        elapsed >= budget && elapsed <= budget + SLACK,
        "{elapsed:?}"
    );
}

/// From inside another, current-thread runtime (whose thread must not be handed to
/// `block_in_place`), the call blocks that thread without panicking and gets its answer from
/// the runtime the view was started on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_from_inside_a_current_thread_runtime() {
    init_tracing();
    let server = FakeApiServer::start("100", vec![], false).await;
    server
        .authorizer()
        .set_answer(SarAnswer::allow("from a nested runtime"));
    let view = live_cluster(&server, AuthorizerSettings::default()).await;
    let request = AccessRequest::use_gmsa("apps", "web", "webapp1");
    let result = tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async { view.authorize(&request, soon()) })
    })
    .await
    .unwrap();
    assert_eq!(result.unwrap(), allowed("from a nested runtime"));
}

/// Called from a plain thread outside any runtime.
#[tokio::test]
async fn works_from_a_thread_outside_the_runtime() {
    init_tracing();
    let server = FakeApiServer::start("100", vec![], false).await;
    let view = live_cluster(&server, AuthorizerSettings::default()).await;
    let request = AccessRequest::use_gmsa("apps", "web", "webapp1");
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(view.authorize(&request, soon()));
    });
    let result = tokio::time::timeout(DEADLINE, rx).await.unwrap().unwrap();
    assert!(result.unwrap().allowed);
}
