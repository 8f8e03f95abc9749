//! Hostile and unusual inputs of the offline tools (`check`, `replay`, `--config`,
//! `--cluster`): YAML merge keys read as kubectl reads them, duplicate keys refused, and no input
//! that hangs or exhausts the process — symbolic link loops, FIFOs, `/dev/zero`, deep nesting,
//! large multi-document files. Every run has a deadline, so a regression fails instead of
//! hanging the test suite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const KADMIT: &str = env!("CARGO_BIN_EXE_kadmit");

/// How long one run may take before the test fails (and the process is killed).
const DEADLINE: Duration = Duration::from_secs(60);

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The `--output json` array.
    fn entries(&self) -> Vec<Value> {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "not a JSON array ({e}): {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Runs `kadmit ARGS` with `stdin`, killing it and failing the test after [`DEADLINE`].
fn kadmit(args: &[&str], stdin: Option<&[u8]>) -> Run {
    let mut child = Command::new(KADMIT)
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
    let input = stdin.map(<[u8]>::to_vec);
    let mut pipe_in = child.stdin.take();
    let writer = std::thread::spawn(move || {
        if let (Some(pipe), Some(input)) = (pipe_in.as_mut(), input) {
            // The process may stop reading early (a size limit): not an error here.
            let _ = pipe.write_all(&input);
        }
    });
    let mut pipe_out = child.stdout.take().unwrap();
    let mut pipe_err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = Vec::new();
        pipe_out.read_to_end(&mut text).unwrap();
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = Vec::new();
        pipe_err.read_to_end(&mut text).unwrap();
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > DEADLINE {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("kadmit {args:?} still running after {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    writer.join().unwrap();
    Run {
        code: status.code(),
        stdout: String::from_utf8(out.join().unwrap()).unwrap(),
        stderr: String::from_utf8(err.join().unwrap()).unwrap(),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A pod that would be allowed at restricted, but for its first container's securityContext
/// lines (`context`, indented under it).
fn pod(name: &str, context: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  containers:
  - name: app
    image: nginx
    securityContext:
{context}      allowPrivilegeEscalation: false
      runAsNonRoot: true
      capabilities: {{drop: [ALL]}}
      seccompProfile: {{type: RuntimeDefault}}
"
    )
}

/// The attack: `privileged: true` hidden behind a merge key, from an anchor and inline.
fn merged_privileged_pods() -> String {
    let anchored = pod("anchored", "      <<: *privileged\n").replace(
        "metadata:\n",
        "x-defaults: &privileged {privileged: true}\nmetadata:\n",
    );
    let inline = pod(
        "inline",
        "      <<: [{privileged: true}, {privileged: false}]\n",
    );
    format!("{anchored}---\n{inline}")
}

#[test]
fn check_denies_a_privileged_pod_behind_a_merge_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "merged.yaml", &merged_privileged_pods());
    let run = kadmit(
        &[
            "check",
            "--level",
            "restricted",
            "--output",
            "json",
            s(&file),
        ],
        None,
    );
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    let entries = run.entries();
    assert_eq!(entries.len(), 2);
    for entry in &entries {
        assert_eq!(entry["allowed"], false, "{entry}");
        assert!(
            entry["violations"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v["check"] == "privileged"),
            "{entry}"
        );
    }
    // A plain pod with the same fields is allowed: it is the merge that is read.
    let plain = write(dir.path(), "plain.yaml", &pod("plain", ""));
    let run = kadmit(&["check", "--level", "restricted", s(&plain)], None);
    assert_eq!(run.code, Some(0), "{}", run.stdout);

    // A key written before `<<` and merged with another value: go-yaml v2 (kubectl) and v3
    // disagree on the result, so it is refused.
    let ambiguous = write(
        dir.path(),
        "ambiguous.yaml",
        &pod(
            "ambiguous",
            "      privileged: false\n      <<: {privileged: true}\n",
        ),
    );
    let run = kadmit(&["check", "--level", "restricted", s(&ambiguous)], None);
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    assert!(
        run.stdout.contains("ambiguous.yaml#0")
            && run
                .stdout
                .contains("key `privileged` is written before `<<`"),
        "{}",
        run.stdout
    );
}

#[test]
fn replay_config_and_snapshot_resolve_merge_keys() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "merged.yaml", &merged_privileged_pods());
    // The configuration's defaults come through a merge key too.
    let config = write(
        dir.path(),
        "kadmit.yaml",
        "podSecurity:\n  defaults:\n    <<: {enforce: restricted, warn: restricted}\n",
    );
    let run = kadmit(
        &[
            "replay",
            "--config",
            s(&config),
            "--output",
            "json",
            s(&file),
        ],
        None,
    );
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let entries = run.entries();
    assert_eq!(entries.len(), 2);
    for entry in &entries {
        assert_eq!(entry["allowed"], false, "{entry}");
        assert!(
            entry["message"].as_str().unwrap().contains("privileged"),
            "{entry}"
        );
    }

    // A snapshot namespace whose enforce label comes through a merge key: check takes the
    // level from it.
    let snapshot = write(
        dir.path(),
        "cluster.yaml",
        "apiVersion: v1\nkind: Namespace\nx-psa: &restricted\n  pod-security.kubernetes.io/enforce: restricted\nmetadata:\n  name: default\n  labels:\n    <<: *restricted\n",
    );
    let plain = write(dir.path(), "plain.yaml", &pod("plain", ""));
    let run = kadmit(
        &[
            "check",
            "--cluster",
            s(&snapshot),
            "--output",
            "json",
            s(&plain),
            s(&file),
        ],
        None,
    );
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let entries = run.entries();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0]["policy"], "restricted:latest", "{}", entries[0]);
    assert_eq!(entries[0]["allowed"], true);
    assert_eq!(entries[1]["allowed"], false);
}

#[test]
fn duplicate_keys_are_input_errors_in_yaml_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = write(
        dir.path(),
        "dup.yaml",
        &pod("dup", "      privileged: true\n      privileged: false\n"),
    );
    let json_text = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "dup"},
 "spec": {"containers": [{"name": "app", "image": "nginx",
   "securityContext": {"privileged": true, "privileged": false}}]}}"#;
    let json = write(dir.path(), "dup.json", json_text);
    for file in [&yaml, &json] {
        let run = kadmit(
            &[
                "check",
                "--level",
                "privileged",
                "--output",
                "json",
                s(file),
            ],
            None,
        );
        assert_eq!(run.code, Some(2), "{}", run.stdout);
        let entries = run.entries();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["path"], s(file));
        assert_eq!(entries[0]["index"], 0);
        let error = entries[0]["error"].as_str().unwrap();
        assert!(error.starts_with("duplicate key `privileged`"), "{error}");
        assert!(error.contains("line "), "{error}");
    }

    // replay: a JSON file, a capture-style JSON lines file, YAML, and standard input.
    let jsonl = write(
        dir.path(),
        "dup.jsonl",
        &format!("{}\n", json_text.replace('\n', "")),
    );
    let run = kadmit(
        &["replay", "--output", "json", s(&yaml), s(&json), s(&jsonl)],
        None,
    );
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    let entries = run.entries();
    assert_eq!(entries.len(), 3);
    for (entry, file) in entries.iter().zip([&yaml, &json, &jsonl]) {
        assert!(
            entry["source"].as_str().unwrap().starts_with(s(file)),
            "{entry}"
        );
        assert!(
            entry["error"]
                .as_str()
                .unwrap()
                .starts_with("duplicate key `privileged`"),
            "{entry}"
        );
    }
    let run = kadmit(
        &["replay", "--output", "json", "-"],
        Some(json_text.as_bytes()),
    );
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    assert!(
        run.stdout.contains("duplicate key `privileged`"),
        "{}",
        run.stdout
    );

    // The configuration file.
    let config = write(
        dir.path(),
        "kadmit.yaml",
        "podSecurity:\n  defaults:\n    enforce: privileged\n    enforce: restricted\n",
    );
    let run = kadmit(&["replay", "--config", s(&config), s(&yaml)], None);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr
            .contains("kadmit.yaml: podSecurity.defaults.enforce: duplicate key"),
        "{}",
        run.stderr
    );
}

#[test]
#[cfg(unix)]
fn a_symbolic_link_loop_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(manifests.join("team")).unwrap();
    write(&manifests.join("team"), "pod.yaml", &pod("ok", ""));
    std::os::unix::fs::symlink("..", manifests.join("team").join("up")).unwrap();
    // A link to a sibling directory is not a loop: it is searched (its files twice).
    std::fs::create_dir_all(manifests.join("shared")).unwrap();
    std::os::unix::fs::symlink("../shared", manifests.join("team").join("shared")).unwrap();
    let run = kadmit(
        &[
            "check",
            "--level",
            "restricted",
            "--output",
            "json",
            s(&manifests),
        ],
        None,
    );
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    let entries = run.entries();
    let loop_path = manifests.join("team").join("up");
    let error = entries
        .iter()
        .find(|e| e["path"] == s(&loop_path))
        .unwrap_or_else(|| panic!("no entry for the loop: {}", run.stdout));
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .starts_with("directory loop: it is "),
        "{error}"
    );
    assert!(
        entries.iter().any(|e| e["allowed"] == true),
        "{}",
        run.stdout
    );

    let run = kadmit(&["replay", "--output", "json", s(&manifests)], None);
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    assert!(run.stdout.contains("directory loop"), "{}", run.stdout);
}

#[test]
#[cfg(unix)]
fn special_files_in_a_directory_are_refused_and_named_ones_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "pod.yaml", &pod("ok", ""));
    let fifo = dir.path().join("fifo.yaml");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let run = kadmit(
        &[
            "check",
            "--level",
            "restricted",
            "--output",
            "json",
            s(dir.path()),
        ],
        None,
    );
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    let entries = run.entries();
    assert_eq!(entries.len(), 2, "{}", run.stdout);
    assert_eq!(entries[0]["path"], s(&fifo));
    assert!(
        entries[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("not a regular file (a FIFO)"),
        "{}",
        entries[0]
    );
    assert_eq!(entries[1]["allowed"], true);
    let run = kadmit(&["replay", "--output", "json", s(dir.path())], None);
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    assert!(run.stdout.contains("not a regular file (a FIFO)"));

    // Named on the command line, a device is read, up to the limit.
    for command in ["check", "replay"] {
        let mut args = vec![command];
        if command == "check" {
            args.extend(["--level", "restricted"]);
        }
        args.extend(["--output", "json", "/dev/zero"]);
        let run = kadmit(&args, None);
        assert_eq!(run.code, Some(2), "{command}: {}", run.stdout);
        assert!(
            run.stdout
                .contains("larger than --max-file-bytes (67108864 bytes)"),
            "{command}: {}",
            run.stdout
        );
    }
    // Standard input too, and the limit is a flag.
    let run = kadmit(
        &["replay", "--max-file-bytes", "100", "--output", "json", "-"],
        Some(pod("big", "").as_bytes()),
    );
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("larger than --max-file-bytes (100 bytes)"),
        "{}",
        run.stdout
    );
    let file = write(dir.path(), "big.yaml", &pod("big", ""));
    let run = kadmit(
        &[
            "check",
            "--level",
            "restricted",
            "--max-file-bytes",
            "100",
            s(&file),
        ],
        None,
    );
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("big.yaml#0 larger than --max-file-bytes (100 bytes)")
    );
    // The --cluster snapshot of the offline tools as well.
    let run = kadmit(&["check", "--cluster", "/dev/zero", s(&file)], None);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("/dev/zero: larger than --max-file-bytes"),
        "{}",
        run.stderr
    );
}

#[test]
fn deep_nesting_is_refused_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let depth = 100_000;
    let flow = write(
        dir.path(),
        "deep.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: deep}}\nspec: {}{}\n",
            "[".repeat(depth),
            "]".repeat(depth)
        ),
    );
    let json = write(
        dir.path(),
        "deep.json",
        &format!("{}{}", "[".repeat(depth), "]".repeat(depth)),
    );
    let block = write(
        dir.path(),
        "block.yaml",
        &format!("{}x\n", "- ".repeat(depth)),
    );
    for file in [&flow, &json, &block] {
        let run = kadmit(
            &[
                "check",
                "--level",
                "restricted",
                "--output",
                "json",
                s(file),
            ],
            None,
        );
        assert_eq!(run.code, Some(2), "{}", run.stdout);
        let entries = run.entries();
        assert!(
            entries[0]["error"]
                .as_str()
                .unwrap()
                .starts_with("nested more than 128 levels deep"),
            "{}",
            entries[0]
        );
    }
    let run = kadmit(
        &["replay", "--output", "json", s(&flow), s(&json), s(&block)],
        None,
    );
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    let entries = run.entries();
    assert_eq!(entries.len(), 3);
    for entry in &entries {
        assert!(
            entry["error"]
                .as_str()
                .unwrap()
                .starts_with("nested more than 128 levels deep"),
            "{entry}"
        );
    }
}

#[test]
fn a_large_multi_document_file_is_checked_document_by_document() {
    let dir = tempfile::tempdir().unwrap();
    let count = 20_000;
    let mut text = String::new();
    for i in 0..count {
        let context = if i == count - 1 {
            "      privileged: true\n"
        } else {
            ""
        };
        text.push_str(&pod(&format!("pod-{i}"), context));
        text.push_str("---\n");
    }
    let file = write(dir.path(), "many.yaml", &text);
    let run = kadmit(
        &[
            "check",
            "--level",
            "restricted",
            "--output",
            "json",
            s(&file),
        ],
        None,
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let entries = run.entries();
    assert_eq!(entries.len(), count);
    assert!(entries[..count - 1].iter().all(|e| e["allowed"] == true));
    assert_eq!(entries[count - 1]["allowed"], false);
    assert_eq!(entries[count - 1]["index"], count - 1);
    assert_eq!(entries[count - 1]["name"], format!("pod-{}", count - 1));
}
