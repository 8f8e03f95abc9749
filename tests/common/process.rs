//! `kadmit serve` as a child process, as operators run it.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// A running `kadmit serve`, killed when dropped (so a failing test leaves nothing behind).
pub struct ServeProcess {
    pub child: Child,
    /// The webhook (TLS) address it bound.
    pub webhook: SocketAddr,
    /// The metrics address it bound.
    pub metrics: SocketAddr,
    /// Every line it has written to stderr so far (its log).
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `kadmit --log-format json serve --bind 127.0.0.1:0 --metrics-bind 127.0.0.1:0 ARGS`
/// and waits (at most a minute) for its `serving` log line with the addresses it bound.
pub fn spawn_serve(args: &[&OsStr]) -> ServeProcess {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kadmit"))
        .args(["--log-format", "json", "serve", "--bind", "127.0.0.1:0"])
        .args(["--metrics-bind", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let log = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&log);
    std::thread::spawn(move || {
        let mut sent = false;
        let mut seen = Vec::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            kept.lock().unwrap().push(line.clone());
            if !sent {
                let serving = serde_json::from_str::<Value>(&line)
                    .ok()
                    .filter(|v| v["fields"]["message"] == "serving");
                match serving {
                    Some(v) => {
                        let address =
                            |key: &str| v["fields"][key].as_str().unwrap().parse().unwrap();
                        let _ = tx.send(Ok((address("webhook"), address("metrics"))));
                        sent = true;
                    }
                    None => seen.push(line),
                }
            }
            // Keep draining so the child never blocks on a full pipe.
        }
        if !sent {
            let _ = tx.send(Err(seen.join("\n")));
        }
    });
    let (webhook, metrics) = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(addresses)) => addresses,
        Ok(Err(log)) => panic!("kadmit serve exited before serving:\n{log}"),
        Err(_) => panic!("kadmit serve did not report its addresses within a minute"),
    };
    ServeProcess {
        child,
        webhook,
        metrics,
        log,
    }
}
