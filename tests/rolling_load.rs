//! Rolling operations at full load: `kadmit serve` processes (every policy on) are kept busy
//! by as many clients as the machine can drive — HTTP/1.1 keep-alive, HTTP/2 and a new
//! connection per request — while their serving certificate is rotated twice (a new CA each
//! time, as the kubelet swaps a secret volume) and while one replica of two is sent SIGTERM.
//! No request may fail.
//!
//! The SIGTERM test puts the replicas behind an in-test stand-in for a Kubernetes Service: a
//! TCP proxy that sends each new connection to a replica whose `/readyz` answered 200 at its
//! last poll (every 50 ms), as kube-proxy does once the endpoints controller has seen readiness.
//! The terminating replica must report not ready, keep serving through `--shutdown-delay`, ask
//! clients to move (`Connection: close`, HTTP/2 GOAWAY), finish what it accepted, and exit 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::process::{ServeProcess, spawn_serve};
use kadmit::certs::GeneratedCerts;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};

/// `kadmit serve` with every policy on, serving the secret volume in `dir`.
fn replica(dir: &Path, extra: &[&str]) -> ServeProcess {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut args: Vec<OsString> = vec![
        "--config".into(),
        repo.join("scripts/bench-full-policies.yaml").into(),
        "--cluster".into(),
        repo.join("scripts/bench-cluster.yaml").into(),
        "--tls-cert-file".into(),
        dir.join("tls.crt").into(),
        "--tls-private-key-file".into(),
        dir.join("tls.key").into(),
        "--cert-reload-interval".into(),
        "100ms".into(),
    ];
    args.extend(extra.iter().map(OsString::from));
    let args: Vec<&std::ffi::OsStr> = args.iter().map(OsString::as_os_str).collect();
    spawn_serve(&args)
}

/// What the load saw.
#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

/// Clients sending reviews to `addr` (as the service name) until `stop`: four HTTP/1.1
/// keep-alive, two HTTP/2 (several requests in flight on one connection), two opening a
/// connection per request. Every answer must be a 200 review with the request's uid.
fn start_load(
    addr: SocketAddr,
    cas: &[&str],
    stop: &Arc<AtomicBool>,
    tally: &Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let url = format!("https://{}:{}/validate", common::SERVICE_NAME, addr.port());
    let mut tasks = Vec::new();
    for worker in 0..12 {
        let builder = common::client_builder(cas, addr);
        let client = match worker {
            0..4 => builder.http1_only().build().unwrap(),
            4..10 => builder.build().unwrap(),
            _ => builder
                .http1_only()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
        };
        // The HTTP/2 clients share two connections, three workers each.
        let (url, stop, tally) = (url.clone(), Arc::clone(stop), Arc::clone(tally));
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let uid = format!("w{worker}-{n}");
                let review = common::pod_review("admission.k8s.io/v1", &uid);
                let outcome = match client.post(&url).json(&review).send().await {
                    Ok(response) if response.status() == 200 => {
                        match response.json::<Value>().await {
                            Ok(answer) if answer["response"]["uid"] == uid.as_str() => Ok(()),
                            Ok(answer) => Err(format!("wrong answer: {answer}")),
                            Err(err) => Err(format!("body: {err:?}")),
                        }
                    }
                    Ok(response) => Err(format!("status {}", response.status())),
                    Err(err) => Err(format!("{err:?}")),
                };
                match outcome {
                    Ok(()) => {
                        tally.ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(failure) => tally.failures.lock().unwrap().push(failure),
                }
            }
        }));
    }
    tasks
}

/// The leaf certificate a new connection to `addr` is served.
async fn served_leaf(addr: SocketAddr, cas: &[&str]) -> Vec<u8> {
    let client = common::client_builder(cas, addr)
        .pool_max_idle_per_host(0)
        .tls_info(true)
        .build()
        .unwrap();
    let url = format!("https://{}:{}/validate", common::SERVICE_NAME, addr.port());
    let response = client
        .post(&url)
        .json(&common::pod_review("admission.k8s.io/v1", "leaf"))
        .send()
        .await
        .unwrap();
    let info = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .unwrap();
    info.peer_certificate().unwrap().to_vec()
}

fn der(certs: &GeneratedCerts) -> Vec<u8> {
    CertificateDer::from_pem_slice(certs.cert_pem.as_bytes())
        .unwrap()
        .to_vec()
}

fn sigterm(process: &ServeProcess) {
    let status = Command::new("kill")
        .args(["-TERM", &process.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn report(what: &str, tally: &Tally, elapsed: Duration) -> Vec<String> {
    let failures = tally.failures.lock().unwrap().clone();
    let ok = tally.ok.load(Ordering::SeqCst);
    println!(
        "{what}: {ok} reviews answered in {:.1} s ({:.0}/s), {} failed",
        elapsed.as_secs_f64(),
        ok as f64 / elapsed.as_secs_f64(),
        failures.len()
    );
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rotations_under_full_load_fail_no_request() {
    let pairs = [
        common::service_certs(),
        common::service_certs(),
        common::service_certs(),
    ];
    let dir = tempfile::tempdir().unwrap();
    common::write_secret_volume(dir.path(), &pairs[0]);
    let server = replica(dir.path(), &[]);
    // The caBundle holds every CA, as it does while a CA is rotated.
    let cas: Vec<&str> = pairs.iter().map(|p| p.ca_pem.as_str()).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let load = start_load(server.webhook, &cas, &stop, &tally);
    tokio::time::sleep(Duration::from_secs(1)).await;
    for pair in &pairs[1..] {
        let before = tally.ok.load(Ordering::SeqCst);
        common::write_secret_volume(dir.path(), pair);
        let deadline = Instant::now() + Duration::from_secs(20);
        while served_leaf(server.webhook, &cas).await != der(pair) {
            assert!(
                Instant::now() < deadline,
                "new connections never got the new certificate"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            tally.ok.load(Ordering::SeqCst) > before,
            "no review answered across the rotation"
        );
    }
    stop.store(true, Ordering::SeqCst);
    for task in load {
        task.await.unwrap();
    }
    let failures = report("two rotations", &tally, started.elapsed());
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(tally.ok.load(Ordering::SeqCst) > 500, "too little load");
    let log = server.log.lock().unwrap().clone();
    let reloads = log
        .iter()
        .filter(|l| l.contains("serving certificate reloaded"))
        .count();
    assert_eq!(reloads, 2, "{log:#?}");
}

/// Which replicas take new connections: those whose `/readyz` said 200 at the last poll.
type Endpoints = Arc<Mutex<Vec<(SocketAddr, bool)>>>;

/// The Service stand-in (see the module documentation): returns its address.
async fn service(endpoints: Endpoints, metrics: Vec<SocketAddr>) -> SocketAddr {
    let poller = Arc::clone(&endpoints);
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(500))
            .build()
            .unwrap();
        loop {
            for (index, metrics) in metrics.iter().enumerate() {
                let ready = match client.get(format!("http://{metrics}/readyz")).send().await {
                    Ok(response) => response.status() == 200,
                    Err(_) => false,
                };
                poller.lock().unwrap()[index].1 = ready;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            let ready: Vec<SocketAddr> = endpoints
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, ready)| *ready)
                .map(|(addr, _)| *addr)
                .collect();
            if ready.is_empty() {
                continue; // dropped: the client sees the connection fail
            }
            let backend = ready[next.fetch_add(1, Ordering::SeqCst) % ready.len()];
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_of_one_replica_under_full_load_fails_no_request() {
    let certs = common::service_certs();
    let dir = tempfile::tempdir().unwrap();
    common::write_secret_volume(dir.path(), &certs);
    let timing = ["--shutdown-delay", "2s", "--shutdown-grace-period", "10s"];
    let mut leaving = replica(dir.path(), &timing);
    let staying = replica(dir.path(), &timing);
    let endpoints: Endpoints = Arc::new(Mutex::new(vec![
        (leaving.webhook, false),
        (staying.webhook, false),
    ]));
    let addr = service(
        Arc::clone(&endpoints),
        vec![leaving.metrics, staying.metrics],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !endpoints.lock().unwrap().iter().all(|(_, ready)| *ready) {
        assert!(Instant::now() < deadline, "the replicas never got ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let load = start_load(addr, &[&certs.ca_pem], &stop, &tally);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = tally.ok.load(Ordering::SeqCst);
    sigterm(&leaving);
    let terminated = Instant::now();
    let exit = loop {
        if let Some(status) = leaving.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            terminated.elapsed() < Duration::from_secs(15),
            "the replica did not exit within delay + grace"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let exited_after = terminated.elapsed();
    let at_exit = tally.ok.load(Ordering::SeqCst);
    // Load goes on against the replica that stays.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    for task in load {
        task.await.unwrap();
    }
    let failures = report("SIGTERM of one replica of two", &tally, started.elapsed());
    println!("the replica exited {exited_after:?} after SIGTERM ({exit})");
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(exit.success(), "{exit}");
    // It kept serving through the delay, then drained.
    assert!(exited_after >= Duration::from_secs(2), "{exited_after:?}");
    let log = leaving.log.lock().unwrap().clone();
    for line in [
        "received SIGTERM",
        "shutdown requested: reporting not ready",
        "listener closed; draining connections",
        "shut down",
    ] {
        assert!(log.iter().any(|l| l.contains(line)), "{line}: {log:#?}");
    }
    assert!(
        !log.iter().any(|l| l.contains("grace period over")),
        "connections were cut: {log:#?}"
    );
    assert!(before > 200, "too little load before SIGTERM: {before}");
    assert!(
        tally.ok.load(Ordering::SeqCst) > at_exit + 200,
        "the staying replica did not take the load"
    );
}
