//! The `kadmit` binary as users run it: `serve --dev` and its printed curl command, SIGTERM
//! under traffic, configuration errors and exit codes, and `kadmit certs` output served as-is.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{SERVICE_NAME, pod_review};
use serde_json::Value;

const KADMIT: &str = env!("CARGO_BIN_EXE_kadmit");

/// Kills the child if a test fails before it ends it.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the process did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads the JSON log on stderr until the "serving" line and returns (webhook, metrics).
fn serving_addrs(child: &mut Child) -> (SocketAddr, SocketAddr) {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let serving = if sent {
                None
            } else {
                serde_json::from_str::<Value>(&line)
                    .ok()
                    .filter(|v| v["fields"]["message"] == "serving")
            };
            if let Some(v) = serving {
                let webhook = v["fields"]["webhook"].as_str().unwrap().parse().unwrap();
                let metrics = v["fields"]["metrics"].as_str().unwrap().parse().unwrap();
                let _ = tx.send((webhook, metrics));
                sent = true;
            }
            // Keep draining so the child never blocks on a full pipe.
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the server reports its addresses")
}

#[test]
fn serve_dev_prints_a_curl_command_that_is_allowed() {
    let mut child = Running(
        Command::new(KADMIT)
            .args([
                "serve",
                "--dev",
                "--bind",
                "127.0.0.1:0",
                "--metrics-bind",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut curl = None;
    for line in stdout.lines() {
        let line = line.unwrap();
        if line.starts_with("kadmit is serving") {
            assert!(
                line.ends_with(
                    "(dev mode: no cluster, built-in configuration, self-signed certificate)"
                ),
                "{line}"
            );
        }
        if line.starts_with("curl ") {
            curl = Some(line);
            break;
        }
    }
    let curl = curl.expect("serve --dev prints a curl command");
    assert!(curl.contains("--cacert"), "{curl}");
    let output = Command::new("sh").args(["-c", &curl]).output().unwrap();
    assert!(
        output.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(
        answer["response"]["uid"],
        "705ab4f5-6393-11e8-b7cc-42010a800002"
    );
    sigterm(&child.0);
    assert_eq!(
        wait_exit(&mut child.0, Duration::from_secs(30)).code(),
        Some(0)
    );
}

#[test]
fn configuration_errors_name_the_file_and_key_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kadmit.yaml");
    std::fs::write(&config, "podSecurity:\n  defaults:\n    enforce: strict\n").unwrap();
    let output = Command::new(KADMIT)
        .args(["serve", "--dev", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "{}: podSecurity.defaults.enforce: unknown variant `strict`",
            config.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("line 3"), "{stderr}");

    std::fs::write(&config, "gmsa:\n  enabled: true\n  randomHostnames: true\n").unwrap();
    let output = Command::new(KADMIT)
        .args(["serve", "--dev", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("gmsa.randomHostnames: unknown field `randomHostnames`")
    );

    let output = Command::new(KADMIT)
        .args(["serve", "--config"])
        .arg(dir.path().join("missing.yaml"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("missing.yaml"));

    let output = Command::new(KADMIT).args(["serve"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("--tls-cert-file and --tls-private-key-file are required")
    );

    let output = Command::new(KADMIT)
        .args(["serve", "--dev", "--max-body-bytes", "2048"])
        .args(["--max-buffered-body-bytes", "1024"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("--max-buffered-body-bytes (1024) must be at least --max-body-bytes (2048)"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let output = Command::new(KADMIT)
        .args(["serve", "--bogus"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

/// `kadmit certs` writes a pair that `serve` uses directly, valid for the service name.
fn certs_in(dir: &std::path::Path) -> String {
    let output = Command::new(KADMIT)
        .args([
            "certs",
            "--service",
            "kadmit",
            "--namespace",
            "kadmit",
            "--out-dir",
        ])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    use base64::Engine as _;
    let bundle = String::from_utf8(output.stdout).unwrap();
    let ca = base64::engine::general_purpose::STANDARD
        .decode(bundle.trim())
        .unwrap();
    let ca = String::from_utf8(ca).unwrap();
    assert_eq!(ca, std::fs::read_to_string(dir.join("ca.crt")).unwrap());
    ca
}

fn start_server(dir: &std::path::Path, extra: &[&str]) -> (Running, SocketAddr, SocketAddr) {
    let mut child = Command::new(KADMIT)
        .args([
            "--log-format",
            "json",
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--metrics-bind",
            "127.0.0.1:0",
            "--cluster",
        ])
        .arg(dir.join("cluster.yaml"))
        .arg("--tls-cert-file")
        .arg(dir.join("tls.crt"))
        .arg("--tls-private-key-file")
        .arg(dir.join("tls.key"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (webhook, metrics) = serving_addrs(&mut child);
    (Running(child), webhook, metrics)
}

#[test]
fn certs_output_serves_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let ca = certs_in(dir.path());
    let again = Command::new(KADMIT)
        .args(["certs", "--out-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists; pass --force"));
    std::fs::write(
        dir.path().join("cluster.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: default}\n",
    )
    .unwrap();
    let (mut child, webhook, _) = start_server(dir.path(), &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = common::client_builder(&[&ca], webhook).build().unwrap();
        let url = format!("https://{SERVICE_NAME}:{}/validate", webhook.port());
        let (status, answer) =
            common::post_json(&client, &url, &pod_review("admission.k8s.io/v1", "certs")).await;
        assert_eq!(status, 200);
        assert_eq!(answer["response"]["uid"], "certs");
    });
    sigterm(&child.0);
    assert_eq!(
        wait_exit(&mut child.0, Duration::from_secs(30)).code(),
        Some(0)
    );
}

#[derive(Default)]
struct Tally {
    ok: usize,
    ok_after_term: usize,
    /// (after SIGTERM?, connect error?, text)
    errors: Vec<(bool, bool, String)>,
}

#[test]
fn sigterm_under_traffic_answers_every_request_sent_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let ca = certs_in(dir.path());
    std::fs::write(dir.path().join("cluster.yaml"), "").unwrap();
    let (mut child, webhook, metrics) = start_server(
        dir.path(),
        &["--shutdown-delay", "1s", "--shutdown-grace-period", "20s"],
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = format!(
        "https://{SERVICE_NAME}:{}/validate?timeout=10s",
        webhook.port()
    );
    let terminated = Arc::new(AtomicBool::new(false));
    let exited = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));

    let status = runtime.block_on(async {
        // Continuous traffic: four keep-alive clients sending back to back.
        let mut loops = Vec::new();
        for worker in 0..4 {
            let client = common::client_builder(&[&ca], webhook)
                .http1_only()
                .build()
                .unwrap();
            let (url, terminated, exited, tally) = (
                url.clone(),
                terminated.clone(),
                exited.clone(),
                tally.clone(),
            );
            loops.push(tokio::spawn(async move {
                let mut n = 0;
                while !exited.load(Ordering::SeqCst) {
                    n += 1;
                    let uid = format!("loop-{worker}-{n}");
                    let after_term = terminated.load(Ordering::SeqCst);
                    let sent = client
                        .post(&url)
                        .json(&pod_review("admission.k8s.io/v1", &uid))
                        .send()
                        .await;
                    let result = match sent {
                        Ok(response) => response
                            .json::<Value>()
                            .await
                            .map(|v| (v["response"]["uid"] == uid.as_str(), v)),
                        Err(err) => Err(err),
                    };
                    let connect_error = matches!(&result, Err(err) if err.is_connect());
                    {
                        let mut tally = tally.lock().unwrap();
                        match result {
                            Ok((true, _)) => {
                                tally.ok += 1;
                                if after_term {
                                    tally.ok_after_term += 1;
                                }
                            }
                            Ok((false, v)) => {
                                tally
                                    .errors
                                    .push((after_term, false, format!("wrong answer {v}")))
                            }
                            Err(err) => tally.errors.push((
                                after_term,
                                err.is_connect(),
                                format!("{err:?}"),
                            )),
                        }
                    }
                    if connect_error {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }));
        }
        // Three requests in flight across the shutdown: their bodies finish only after the
        // listener has closed.
        let mut slow = Vec::new();
        let mut releases = Vec::new();
        for i in 0..3 {
            let (release, released) = tokio::sync::oneshot::channel::<()>();
            releases.push(release);
            let uid = format!("slow-{i}");
            let body = serde_json::to_vec(&pod_review("admission.k8s.io/v1", &uid)).unwrap();
            let (head, tail) = body.split_at(body.len() / 2);
            let (head, tail) = (head.to_vec(), tail.to_vec());
            let stream = futures::stream::unfold(
                (Some(head), Some((released, tail))),
                |(head, rest)| async move {
                    if let Some(head) = head {
                        return Some((Ok::<_, std::io::Error>(head), (None, rest)));
                    }
                    let (released, tail) = rest?;
                    let _ = released.await;
                    Some((Ok(tail), (None, None)))
                },
            );
            let client = common::client_builder(&[&ca], webhook).build().unwrap();
            let url = url.clone();
            slow.push(tokio::spawn(async move {
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(reqwest::Body::wrap_stream(stream))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                let answer: Value = response.json().await.unwrap();
                assert_eq!(answer["response"]["uid"], uid.as_str());
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = tally.lock().unwrap().ok;
        assert!(before > 0, "no traffic before SIGTERM");
        terminated.store(true, Ordering::SeqCst);
        sigterm(&child.0);
        // Readiness goes false at once.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let ready = reqwest::get(format!("http://{metrics}/readyz"))
                .await
                .map(|r| r.status().as_u16());
            if matches!(ready, Ok(503)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "readyz did not turn 503: {ready:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Past the shutdown delay the listener is closed; finish the in-flight bodies then.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        for release in releases {
            let _ = release.send(());
        }
        for task in slow {
            task.await.unwrap();
        }
        let status = tokio::task::spawn_blocking(move || {
            let status = wait_exit(&mut child.0, Duration::from_secs(30));
            (status, child)
        })
        .await
        .unwrap();
        exited.store(true, Ordering::SeqCst);
        for task in loops {
            task.await.unwrap();
        }
        status.0
    });
    assert_eq!(status.code(), Some(0), "exit status");
    let tally = tally.lock().unwrap();
    println!(
        "answered {} requests ({} after SIGTERM); {} refused connections after the listener closed",
        tally.ok,
        tally.ok_after_term,
        tally.errors.len()
    );
    assert!(
        tally.ok_after_term > 0,
        "nothing was served during the shutdown delay"
    );
    for (after_term, connect, text) in &tally.errors {
        assert!(after_term, "a request failed before SIGTERM: {text}");
        assert!(
            connect,
            "a request that reached the server was not answered: {text}"
        );
    }
}
