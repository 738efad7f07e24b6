//! A TUF repository for the trusted-root tests: written by python-tuf (the reference
//! implementation) through `tests/env/tools/tuf/tuf-repo`, and served from its directory by a
//! plain file server on 127.0.0.1, so a test can change what the mirror serves on disk.
//! Stops serving and removes its directory when dropped.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::env::{EnvError, TestEnv};

fn err(message: impl std::fmt::Display) -> EnvError {
    EnvError::Bundle(format!("TUF repository: {message}"))
}

pub struct TufRepo {
    python: PathBuf,
    /// Keys (`keys/`) and the mirror's files (`repo/`).
    pub dir: PathBuf,
    /// `http://127.0.0.1:<port>`: the mirror.
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

fn tool() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("env/tools/tuf/tuf-repo")
}

impl TufRepo {
    /// A new repository under `dir` publishing `targets` (name, file), served.
    pub fn start(env: &TestEnv, dir: &Path, targets: &[(&str, &Path)]) -> Result<Self, EnvError> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).map_err(err)?;
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(err)?;
        let url = format!("http://{}", listener.local_addr().map_err(err)?);
        let served = dir.join("repo");
        let stop = crate::serve::serve_on_thread(listener, move |req| {
            let answer = file(&served, req.uri().path());
            async move { answer }
        })?;
        let repo = Self {
            python: env.tuf_python.clone(),
            dir: dir.to_owned(),
            url,
            stop: Some(stop),
        };
        repo.run("init", targets)?;
        Ok(repo)
    }

    /// `tuf-repo COMMAND DIR --target NAME=FILE ...` (`update`, `rotate-root`,
    /// `expire-timestamp`).
    pub fn run(&self, command: &str, targets: &[(&str, &Path)]) -> Result<(), EnvError> {
        let mut cmd = std::process::Command::new(&self.python);
        cmd.arg(tool()).arg(command).arg(&self.dir);
        for (name, path) in targets {
            cmd.arg("--target")
                .arg(format!("{name}={}", path.display()));
        }
        let out = cmd.output().map_err(err)?;
        if !out.status.success() {
            return Err(err(format!(
                "tuf-repo {command}: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(())
    }

    /// The root a client pins: version 1, as first published.
    pub fn first_root(&self) -> PathBuf {
        self.dir.join("repo/1.root.json")
    }

    /// The file the mirror serves for `target` (consistent snapshots: `<sha256>.<name>`).
    pub fn target_file(&self, target: &str) -> Option<PathBuf> {
        std::fs::read_dir(self.dir.join("repo/targets"))
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(&format!(".{target}")))
            })
            .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
    }
}

/// The file under `root` a GET of `path` names, or 404.
fn file(root: &Path, path: &str) -> Response<Full<Bytes>> {
    let relative = path.trim_start_matches('/');
    let safe = !relative.is_empty()
        && relative
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    match std::fs::read(root.join(relative)) {
        Ok(bytes) if safe => Response::new(Full::new(Bytes::from(bytes))),
        _ => {
            let mut answer = Response::new(Full::new(Bytes::from_static(b"not found")));
            *answer.status_mut() = StatusCode::NOT_FOUND;
            answer
        }
    }
}

impl Drop for TufRepo {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
