//! Faults in the test control plane itself, for the tests that must survive them: kill
//! kube-apiserver or etcd (SIGKILL) and start it again exactly as `tests/env/up` did (the same
//! command line, environment and log), and compact etcd so that a watch resuming from an
//! older resourceVersion is answered 410 Gone.
//!
//! Acts only on the processes listed in the environment's own `pids` file, on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::env::{EnvError, TestEnv};

fn err(message: impl std::fmt::Display) -> EnvError {
    EnvError::Bundle(format!("control plane: {message}"))
}

/// The environment's directory (where `pids`, `logs/` and the kubeconfig live).
fn env_dir(env: &TestEnv) -> PathBuf {
    env.kubeconfig
        .parent()
        .map_or_else(PathBuf::new, Path::to_path_buf)
}

fn pid_of(env: &TestEnv, name: &str) -> Result<u32, EnvError> {
    let path = env_dir(env).join("pids");
    let text = std::fs::read_to_string(&path).map_err(|source| EnvError::Read {
        path: path.clone(),
        source,
    })?;
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(n, _)| *n == name)
        .filter_map(|(_, pid)| pid.trim().parse().ok())
        .next_back()
        .ok_or_else(|| err(format!("{name} is not in {}", path.display())))
}

/// NUL-separated fields of a /proc file.
fn proc_fields(pid: u32, file: &str) -> Result<Vec<String>, EnvError> {
    let path = PathBuf::from(format!("/proc/{pid}/{file}"));
    let raw = std::fs::read(&path).map_err(|source| EnvError::Read { path, source })?;
    Ok(raw
        .split(|b| *b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect())
}

/// The value after `flag` on `name`'s command line.
pub fn flag_of(env: &TestEnv, name: &str, flag: &str) -> Result<String, EnvError> {
    let argv = proc_fields(pid_of(env, name)?, "cmdline")?;
    argv.iter()
        .position(|a| a == flag)
        .and_then(|i| argv.get(i + 1).cloned())
        .ok_or_else(|| err(format!("{name} has no {flag}")))
}

/// Whether process `pid` has exited: no longer there, or only a zombie left (a process an
/// earlier restart started is this test's child, and nobody reaps it). Every thread counts:
/// a multi-threaded process holds its sockets until the last thread is gone, even when its
/// first thread already shows as a zombie.
fn gone(pid: u32) -> bool {
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return true;
    };
    threads.flatten().all(|thread| {
        std::fs::read_to_string(thread.path().join("stat")).map_or(true, |stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state == "Z" || state == "X")
        })
    })
}

/// Kills `name` (SIGKILL) and starts it again with the same command line and environment;
/// returns once the API server answers `/readyz` again.
pub async fn restart(env: &TestEnv, name: &str) -> Result<(), EnvError> {
    let pid = pid_of(env, name)?;
    let command_line = proc_fields(pid, "cmdline")?;
    let environ = proc_fields(pid, "environ")?;
    let (program, arguments) = command_line
        .split_first()
        .ok_or_else(|| err("empty command line"))?;
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .map_err(err)?;
    if !status.success() {
        return Err(err(format!("kill {pid} failed")));
    }
    while !gone(pid) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dir = env_dir(env);
    let log_path = dir.join("logs").join(format!("{name}.log"));
    // A start that dies or never gets ready is tried again, twice: the test is about what
    // Signet does while the control plane restarts, not about one start of the API server.
    for attempt in 1..=3 {
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&log_path)
            .map_err(err)?;
        let mut child = Command::new("setsid")
            .arg(program)
            .args(arguments)
            .env_clear()
            .envs(environ.iter().filter_map(|kv| kv.split_once('=')))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(err)?)
            .stderr(log)
            .spawn()
            .map_err(err)?;
        // `tests/env/down` stops what the pids file lists: the new process replaces the old.
        let pids = dir.join("pids");
        let text = std::fs::read_to_string(&pids).map_err(err)?;
        let updated: String = text
            .lines()
            .map(|l| {
                if l.split_once(' ').is_some_and(|(n, _)| n == name) {
                    format!("{name} {}\n", child.id())
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        std::fs::write(&pids, updated).map_err(err)?;
        match wait_ready_while(env, &mut child, Duration::from_secs(60)).await {
            Ok(()) => return Ok(()),
            Err(why) if attempt < 3 => {
                eprintln!(
                    "control plane: {name} start {attempt} failed ({why}); starting it again"
                );
                let _ = child.kill();
                let _ = child.wait();
            }
            Err(why) => {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                return Err(err(format!(
                    "{name} did not become ready in three starts ({why}); its log ends:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )));
            }
        }
    }
    Err(err(format!("{name} was not started")))
}

/// Waits until the API server answers `/readyz`, at most `within`, or until `child` exits.
async fn wait_ready_while(
    env: &TestEnv,
    child: &mut std::process::Child,
    within: Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("it exited: {status}"));
        }
        if ready(env).await {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("not ready in {within:?}"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Whether the API server answers `/readyz` within 5 s.
async fn ready(env: &TestEnv) -> bool {
    let Ok(client) = env.admin_client() else {
        return false;
    };
    let Ok(request) = http::Request::get("/readyz").body(Vec::new()) else {
        return false;
    };
    tokio::time::timeout(Duration::from_secs(5), client.request_text(request))
        .await
        .is_ok_and(|answer| answer.is_ok())
}

/// Waits (up to two minutes) until the API server answers `/readyz`.
pub async fn wait_ready(env: &TestEnv) -> Result<(), EnvError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        if ready(env).await {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(err("the API server did not become ready again in 120 s"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Compacts etcd's history up to its current revision: a watch that resumes from an older
/// resourceVersion is then answered 410 Gone. Returns the revision.
pub async fn compact_etcd(env: &TestEnv) -> Result<i64, EnvError> {
    let url = flag_of(env, "etcd", "--listen-client-urls")?;
    let http = reqwest::Client::new();
    let key = base64::engine::general_purpose::STANDARD.encode([0u8]);
    let answer: Value = http
        .post(format!("{url}/v3/kv/range"))
        .json(&json!({"key": key, "limit": 1}))
        .send()
        .await
        .map_err(err)?
        .json()
        .await
        .map_err(err)?;
    let revision: i64 = answer["header"]["revision"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .ok_or_else(|| err(format!("etcd answered no revision: {answer}")))?;
    let response = http
        .post(format!("{url}/v3/kv/compaction"))
        .json(&json!({"revision": revision.to_string(), "physical": true}))
        .send()
        .await
        .map_err(err)?;
    if !response.status().is_success() {
        return Err(err(format!("compaction: {}", response.status())));
    }
    Ok(revision)
}
