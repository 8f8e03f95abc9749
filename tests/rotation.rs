//! Certificate rotation under continuous traffic: the files are replaced the way a Kubernetes
//! secret volume replaces them (`..data` symlink swap) while clients keep sending; no request
//! fails, new connections get the new certificate, and a broken pair is refused while the
//! current one keeps serving. Files a writer could put in the pair's place to hang or mislead the
//! reloader (a FIFO, `/dev/zero`, a chain no client accepts) are refused and counted, at startup
//! with exit 2.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{TestOptions, TestServer, pod_review};
use kadmit::certs::GeneratedCerts;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;

fn der(certs: &GeneratedCerts) -> Vec<u8> {
    CertificateDer::from_pem_slice(certs.cert_pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// The leaf certificate a brand-new connection is served.
async fn served_leaf(client: &reqwest::Client, url: &str) -> Vec<u8> {
    let response = client
        .post(url)
        .json(&pod_review("admission.k8s.io/v1", "probe"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("TLS info")
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_traffic_fails_no_request() {
    let first = common::service_certs();
    let second = common::service_certs();
    let server = TestServer::start_with_certs(
        TestOptions {
            cert_reload_interval: Some(Duration::from_millis(100)),
            ..TestOptions::default()
        },
        first.clone(),
    )
    .await;
    let url = server.url("/validate");
    // Clients trust both CAs, as a caBundle holding old and new CA does during a CA rotation.
    let fresh_connections = || {
        common::client_builder(&[&first.ca_pem, &second.ca_pem], server.addr)
            .pool_max_idle_per_host(0)
            .tls_info(true)
            .build()
            .unwrap()
    };
    assert_eq!(served_leaf(&fresh_connections(), &url).await, der(&first));

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut workers = Vec::new();
    for worker in 0..4 {
        // Half keep their connections alive across the rotation, half open one per request.
        let builder = common::client_builder(&[&first.ca_pem, &second.ca_pem], server.addr);
        let client = if worker % 2 == 0 {
            builder.build().unwrap()
        } else {
            builder.pool_max_idle_per_host(0).build().unwrap()
        };
        let (url, stop, ok, failures) = (url.clone(), stop.clone(), ok.clone(), failures.clone());
        workers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let uid = format!("w{worker}-{n}");
                let result = client
                    .post(&url)
                    .json(&pod_review("admission.k8s.io/v1", &uid))
                    .send()
                    .await;
                match result {
                    Ok(response) if response.status() == 200 => {
                        let answer: Value = response.json().await.unwrap();
                        if answer["response"]["uid"] == uid.as_str() {
                            ok.fetch_add(1, Ordering::SeqCst);
                        } else {
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("wrong uid: {answer}"));
                        }
                    }
                    Ok(response) => failures
                        .lock()
                        .unwrap()
                        .push(format!("status {}", response.status())),
                    Err(err) => failures.lock().unwrap().push(format!("{err:?}")),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Rotate: the kubelet's atomic ..data swap.
    common::write_secret_volume(server.dir.path(), &second);
    let deadline = Instant::now() + Duration::from_secs(20);
    while served_leaf(&fresh_connections(), &url).await != der(&second) {
        assert!(
            Instant::now() < deadline,
            "new connections never saw the new certificate"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A broken pair (the new certificate with the old key) is refused; the current one stays.
    let broken = GeneratedCerts {
        ca_pem: second.ca_pem.clone(),
        cert_pem: second.cert_pem.clone(),
        key_pem: first.key_pem.clone(),
    };
    common::write_secret_volume(server.dir.path(), &broken);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = reqwest::get(format!("http://{}/metrics", server.metrics_addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains("kadmit_tls_certificate_reloads_total{result=\"failure\"} 1") {
            assert!(
                metrics.contains("kadmit_tls_certificate_reloads_total{result=\"success\"} 1"),
                "{metrics}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the broken pair was never noticed:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(served_leaf(&fresh_connections(), &url).await, der(&second));
    tokio::time::sleep(Duration::from_millis(300)).await;

    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    let ok = ok.load(Ordering::SeqCst);
    println!(
        "{ok} requests answered during two rotations, {} failed",
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:?}");
    assert!(ok > 50, "too little traffic to mean anything: {ok}");
    server.stop().await;
}

/// `kadmit_tls_certificate_reloads_total{result}` as /metrics shows it.
fn reloads(server: &TestServer, result: &str) -> u64 {
    let prefix = format!("kadmit_tls_certificate_reloads_total{{result=\"{result}\"}} ");
    server
        .metrics
        .encode()
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// Waits (at most 20 s) until the reload counter for `result` reaches `n`.
async fn reloads_reach(server: &TestServer, result: &str, n: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while reloads(server, result) < n {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// Points `tls.crt` at `target` atomically (a symlink renamed over it), as a writer with access
/// to the volume could.
fn point_cert_at(dir: &std::path::Path, target: &std::path::Path) {
    let tmp = dir.join("tls.crt.tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("tls.crt")).unwrap();
}

/// A server serving `certs` that checks its files every 100 ms.
async fn reloading_server(certs: &GeneratedCerts) -> TestServer {
    TestServer::start_with_certs(
        TestOptions {
            cert_reload_interval: Some(Duration::from_millis(100)),
            ..TestOptions::default()
        },
        certs.clone(),
    )
    .await
}

/// A client trusting `cas` that opens a new connection (so a new handshake) per request.
fn fresh_client(server: &TestServer, cas: &[&str]) -> reqwest::Client {
    common::client_builder(cas, server.addr)
        .pool_max_idle_per_host(0)
        .tls_info(true)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_as_the_certificate_is_counted_and_a_later_rotation_still_loads() {
    let first = common::service_certs();
    let second = common::service_certs();
    let server = reloading_server(&first).await;
    let url = server.url("/validate");
    let client = || fresh_client(&server, &[&first.ca_pem, &second.ca_pem]);

    let fifo = server.dir.path().join("fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    point_cert_at(server.dir.path(), &fifo);
    if !reloads_reach(&server, "failure", 1).await {
        // Release a reader stuck opening the FIFO (opening it read-write does not wait), after
        // pointing tls.crt away so the next poll does not block again, so the test fails
        // instead of hanging at runtime shutdown.
        point_cert_at(server.dir.path(), std::path::Path::new("..data/tls.crt"));
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&fifo),
        );
        panic!("a FIFO in place of tls.crt was never counted as a failed reload");
    }
    assert_eq!(served_leaf(&client(), &url).await, der(&first));
    // Still a FIFO several polls later: reported once, not every poll.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(reloads(&server, "failure"), 1);

    // A real rotation afterwards is picked up: the reloader is not stuck on the FIFO.
    common::write_secret_volume(server.dir.path(), &second);
    point_cert_at(server.dir.path(), std::path::Path::new("..data/tls.crt"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while served_leaf(&client(), &url).await != der(&second) {
        assert!(
            Instant::now() < deadline,
            "the rotation after the FIFO was never loaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(reloads(&server, "success"), 1);
    assert_eq!(reloads(&server, "failure"), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_zero_as_the_certificate_is_refused_not_read() {
    let first = common::service_certs();
    let server = reloading_server(&first).await;
    let url = server.url("/validate");
    point_cert_at(server.dir.path(), std::path::Path::new("/dev/zero"));
    assert!(
        reloads_reach(&server, "failure", 1).await,
        "/dev/zero in place of tls.crt was never counted as a failed reload"
    );
    assert_eq!(
        served_leaf(&fresh_client(&server, &[&first.ca_pem]), &url).await,
        der(&first)
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(reloads(&server, "failure"), 1);
    assert_eq!(reloads(&server, "success"), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chains_clients_would_refuse_are_not_loaded() {
    let first = common::service_certs();
    let second = common::service_certs();
    let server = reloading_server(&first).await;
    let url = server.url("/validate");
    let client = || fresh_client(&server, &[&first.ca_pem, &second.ca_pem]);
    // The new leaf and its own key, with the leaf repeated as "intermediates": only the chain
    // is wrong.
    let chain_of = |n: usize| GeneratedCerts {
        ca_pem: second.ca_pem.clone(),
        cert_pem: second.cert_pem.repeat(n),
        key_pem: second.key_pem.clone(),
    };

    // About 1.3 MB of PEM: refused by the file size cap before it is parsed.
    common::write_secret_volume(server.dir.path(), &chain_of(2000));
    assert!(
        reloads_reach(&server, "failure", 1).await,
        "a 2000-certificate chain was not refused (success count: {})",
        reloads(&server, "success")
    );
    assert_eq!(served_leaf(&client(), &url).await, der(&first));

    // Small enough to read, still longer than clients accept: refused by the chain length.
    common::write_secret_volume(server.dir.path(), &chain_of(11));
    assert!(
        reloads_reach(&server, "failure", 2).await,
        "an 11-certificate chain was not refused (success count: {})",
        reloads(&server, "success")
    );
    assert_eq!(served_leaf(&client(), &url).await, der(&first));
    assert_eq!(reloads(&server, "success"), 0);
    server.stop().await;
}

/// Runs `kadmit serve` with `args` and returns its exit code and stderr, killing it (and
/// failing) if it has not exited within 20 s: it must refuse these files, not wait on them.
fn serve_refuses(args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    use std::io::Read;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kadmit"))
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--metrics-bind",
            "127.0.0.1:0",
        ])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kadmit serve {args:?} did not exit within 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.code(), stderr)
}

#[test]
fn startup_refuses_the_same_files_with_exit_2() {
    let certs = common::service_certs();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    std::fs::write(path("tls.crt"), &certs.cert_pem).unwrap();
    std::fs::write(path("tls.key"), &certs.key_pem).unwrap();
    std::fs::write(path("long.crt"), certs.cert_pem.repeat(11)).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(path("fifo"))
        .status()
        .unwrap();
    assert!(status.success());
    let zero = std::path::Path::new("/dev/zero");
    let cases: [(
        &std::path::Path,
        &std::path::Path,
        Option<&std::path::Path>,
        String,
    ); 5] = [
        (
            &path("fifo"),
            &path("tls.key"),
            None,
            format!("{} is a FIFO, not a regular file", path("fifo").display()),
        ),
        (
            zero,
            &path("tls.key"),
            None,
            "/dev/zero is a character device, not a regular file".to_owned(),
        ),
        (
            &path("tls.crt"),
            &path("fifo"),
            None,
            format!("{} is a FIFO", path("fifo").display()),
        ),
        (
            &path("long.crt"),
            &path("tls.key"),
            None,
            "the chain holds 11 certificates, more than the 10 a client accepts".to_owned(),
        ),
        (
            &path("tls.crt"),
            &path("tls.key"),
            Some(&path("fifo")),
            format!("{} is a FIFO", path("fifo").display()),
        ),
    ];
    for (cert, key, client_ca, expected) in cases {
        let mut args = vec![
            "--tls-cert-file".as_ref(),
            cert.as_os_str(),
            "--tls-private-key-file".as_ref(),
            key.as_os_str(),
        ];
        if let Some(ca) = client_ca {
            args.extend(["--client-ca-file".as_ref(), ca.as_os_str()]);
        }
        let (code, stderr) = serve_refuses(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&expected),
            "{args:?}: expected {expected:?} in\n{stderr}"
        );
    }
}
