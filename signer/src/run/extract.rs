//! Finds subjects (what a run built) and materials (what it used) from its results and
//! steps, with Chains' type-hinting rules. Every digest is validated; the output order is
//! deterministic (sorted, de-duplicated). Pure.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::run::Run;

/// An in-toto resource descriptor: `{name|uri, digest: {alg: hex}}`, with the role Chains
/// names a resolved dependency by (`inputs/result` for type-hinted inputs).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Artifact {
    pub uri: String,
    pub digest: BTreeMap<String, String>,
    pub role: Option<&'static str>,
}

/// Chains' name for a resolved dependency that came from a type-hinted parameter or result.
pub const INPUT_RESULT: &str = "inputs/result";

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Artifacts as in-toto descriptors, `key` being `name` (subjects) or `uri` (materials; with
/// `named`, a material's role goes in `name` as in SLSA v1.0's resolved dependencies).
pub fn descriptors(list: &[Artifact], key: &str, named: bool) -> Value {
    Value::Array(
        list.iter()
            .map(|a| {
                let mut d = serde_json::json!({key: a.uri, "digest": a.digest});
                if let (true, Some(role)) = (named, a.role) {
                    d["name"] = role.into();
                }
                d
            })
            .collect(),
    )
}

/// What a run (and a PipelineRun's child TaskRuns) built and used, type-hinted once per run:
/// the formats, image signing and every storage backend read this one value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunArtifacts {
    own: Extracted,
    children: Vec<Extracted>,
}

impl RunArtifacts {
    pub fn of(run: &Run, children: &[Run]) -> Self {
        Self {
            own: extract(run),
            children: children.iter().map(extract).collect(),
        }
    }

    /// The run's subjects, with `deep` its children's too; `only_build` leaves out
    /// `*ARTIFACT_OUTPUTS` not marked `isBuildArtifact` and adds steps' build artifacts
    /// (SLSA v1.0 `v2alpha4`).
    pub fn subjects(&self, only_build: bool, deep: bool) -> Vec<Artifact> {
        let runs = self.with_children(deep);
        sorted(runs.flat_map(|e| {
            let (others, steps) = if only_build {
                (&[][..], &e.step_subjects[..])
            } else {
                (&e.other_outputs[..], &[][..])
            };
            e.subjects.iter().chain(others).chain(steps)
        }))
    }

    /// Every material of the run and its children, in the order Chains lists them (step and
    /// sidecar images, then inputs), each `uri` + `digest` once.
    pub fn materials(&self) -> Vec<Artifact> {
        let mut seen = std::collections::BTreeSet::new();
        self.with_children(true)
            .flat_map(|e| &e.materials)
            .filter(|a| seen.insert((&a.uri, &a.digest)))
            .cloned()
            .collect()
    }

    /// The run's own materials (for a PipelineRun: its type-hinted inputs).
    pub fn own_materials(&self) -> &[Artifact] {
        &self.own.materials
    }

    /// The materials of the `i`th child (as `of` was given them): step and sidecar images,
    /// then type-hinted inputs.
    pub fn child_materials(&self, i: usize) -> &[Artifact] {
        self.children.get(i).map_or(&[], |c| &c.materials)
    }

    /// The images the run built, with `deep` its children's too.
    pub fn images(&self, deep: bool) -> Vec<Artifact> {
        sorted(self.with_children(deep).flat_map(|e| &e.images))
    }

    /// Results that were ignored (with why), the run's own first.
    pub fn rejected(&self) -> impl Iterator<Item = &str> {
        self.with_children(true)
            .flat_map(|e| e.rejected.iter().map(String::as_str))
    }

    fn with_children(&self, children: bool) -> impl Iterator<Item = &Extracted> {
        let children = if children { &self.children[..] } else { &[] };
        std::iter::once(&self.own).chain(children)
    }
}

fn sorted<'a>(artifacts: impl Iterator<Item = &'a Artifact>) -> Vec<Artifact> {
    let mut list: Vec<Artifact> = artifacts.cloned().collect();
    list.sort();
    list.dedup();
    list
}

/// Parses `alg:hex` with a known algorithm and the right length.
pub fn parse_digest(d: &str) -> Option<(String, String)> {
    let (alg, hex) = d.trim().split_once(':')?;
    let ok = match alg {
        "sha256" => is_hex(hex, 64),
        "sha512" => is_hex(hex, 128),
        "sha1" => is_hex(hex, 40),
        _ => false,
    };
    ok.then(|| (alg.to_owned(), hex.to_owned()))
}

fn artifact(uri: &str, digest: &str) -> Option<Artifact> {
    let (alg, hex) = parse_digest(digest)?;
    Some(Artifact {
        uri: uri.trim().to_owned(),
        digest: BTreeMap::from([(alg, hex)]),
        role: None,
    })
}

/// An image reference `repo@sha256:<hex>`, split.
fn image_ref(r: &str) -> Option<Artifact> {
    let (repo, digest) = r.trim().split_once('@')?;
    let a = artifact(repo, digest)?;
    (a.digest.contains_key("sha256") && !repo.is_empty()).then_some(a)
}

/// What one run's results and steps say it built and used.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Extracted {
    /// Images, `*ARTIFACT_URI`s and build `*ARTIFACT_OUTPUTS`.
    subjects: Vec<Artifact>,
    /// `*ARTIFACT_OUTPUTS` not marked `isBuildArtifact`.
    other_outputs: Vec<Artifact>,
    /// Steps' `*ARTIFACT_OUTPUTS` marked `isBuildArtifact` (subjects in `v2alpha4`).
    step_subjects: Vec<Artifact>,
    materials: Vec<Artifact>,
    images: Vec<Artifact>,
    /// Results that were ignored, with why.
    rejected: Vec<String>,
}

fn string_of(v: &Value) -> Option<&str> {
    v.as_str()
}

/// Applies the type-hinting rules to `run`'s results.
fn extract(run: &Run) -> Extracted {
    let results = run.results();
    let by_name: BTreeMap<&str, &Value> = results
        .iter()
        .map(|r| (r.name.as_str(), &r.value))
        .collect();
    let mut out = Extracted::default();
    let mut inputs = Vec::new();
    for (name, value) in &by_name {
        if let Some(prefix) = name.strip_suffix("IMAGE_URL") {
            let digest = by_name
                .get(format!("{prefix}IMAGE_DIGEST").as_str())
                .and_then(|v| string_of(v));
            match (string_of(value), digest) {
                (Some(url), Some(d)) => match artifact(url.split('@').next().unwrap_or(url), d) {
                    Some(a) if a.digest.contains_key("sha256") => out.images.push(a),
                    _ => out.rejected.push(format!("{name}: invalid digest {d:?}")),
                },
                _ => out
                    .rejected
                    .push(format!("{name}: no matching {prefix}IMAGE_DIGEST")),
            }
        } else if *name == "IMAGES" {
            for r in string_of(value)
                .unwrap_or_default()
                .split([',', '\n'])
                .filter(|s| !s.trim().is_empty())
            {
                match image_ref(r) {
                    Some(a) => out.images.push(a),
                    None => out
                        .rejected
                        .push(format!("IMAGES: invalid reference {r:?}")),
                }
            }
        } else if let Some(prefix) = name.strip_suffix("ARTIFACT_URI") {
            let digest = by_name
                .get(format!("{prefix}ARTIFACT_DIGEST").as_str())
                .and_then(|v| string_of(v));
            match (
                string_of(value),
                digest.and_then(|d| artifact(string_of(value).unwrap_or_default(), d)),
            ) {
                (Some(_), Some(a)) => out.subjects.push(a),
                _ => out.rejected.push(format!(
                    "{name}: missing or invalid {prefix}ARTIFACT_DIGEST"
                )),
            }
        } else if name.ends_with("ARTIFACT_OUTPUTS") {
            match typed_object(value) {
                Ok(a) if is_build_artifact(value) => out.subjects.push(a),
                Ok(a) => out.other_outputs.push(a),
                Err(why) => out.rejected.push(format!("{name}: {why}")),
            }
        } else if name.ends_with("ARTIFACT_INPUTS") {
            match typed_object(value) {
                Ok(a) => inputs.push(a),
                Err(why) => out.rejected.push(format!("{name}: {why}")),
            }
        }
    }
    let mut materials = step_images(run);
    for (step_name, r) in run.step_results() {
        let (name, value) = (r.name.as_str(), &r.value);
        let found = if name.ends_with("ARTIFACT_INPUTS") {
            typed_object(value).map(|a| materials.push(input(a)))
        } else if name.ends_with("ARTIFACT_OUTPUTS") && is_build_artifact(value) {
            typed_object(value).map(|a| out.step_subjects.push(a))
        } else {
            Ok(())
        };
        if let Err(why) = found {
            out.rejected
                .push(format!("step {step_name} result {name}: {why}"));
        }
    }
    materials.extend(inputs.into_iter().map(input));
    materials.extend(git_source(run, &by_name));
    out.materials = materials;
    out.subjects.extend(out.images.iter().cloned());
    out
}

fn input(a: Artifact) -> Artifact {
    Artifact {
        role: Some(INPUT_RESULT),
        ..a
    }
}

/// An `*ARTIFACT_OUTPUTS` / `*ARTIFACT_INPUTS` value: `{uri, digest}`.
fn typed_object(value: &Value) -> Result<Artifact, String> {
    match (value["uri"].as_str(), value["digest"].as_str()) {
        (Some(u), Some(d)) => artifact(u, d).ok_or_else(|| format!("invalid digest {d:?}")),
        _ => Err("needs uri and digest".to_owned()),
    }
}

/// An `*ARTIFACT_OUTPUTS` value marked `isBuildArtifact` (`"true"` or `true`).
pub fn is_build_artifact(value: &Value) -> bool {
    value["isBuildArtifact"].as_str() == Some("true") || value["isBuildArtifact"] == true
}

/// The source repository from `CHAINS-GIT_URL` / `CHAINS-GIT_COMMIT`, as Chains reads them:
/// the Task's (or Pipeline's) parameter defaults, overridden by the run's parameters,
/// overridden by its results. The commit is taken as written (Chains does not check it).
fn git_source<'a>(run: &'a Run, results: &BTreeMap<&str, &'a Value>) -> Option<Artifact> {
    let status = &run.object["status"];
    let spec_key = match run.kind {
        crate::run::RunKind::TaskRun => "taskSpec",
        crate::run::RunKind::PipelineRun => "pipelineSpec",
    };
    let mut found: BTreeMap<&str, &str> = BTreeMap::new();
    let mut take = |name: &str, value: &'a Value| {
        for key in ["CHAINS-GIT_URL", "CHAINS-GIT_COMMIT"] {
            if let (true, Some(v)) = (name == key, value.as_str()) {
                found.insert(key, v);
            }
        }
    };
    for p in status[spec_key]["params"].as_array().into_iter().flatten() {
        take(p["name"].as_str().unwrap_or_default(), &p["default"]);
    }
    for p in run.object["spec"]["params"]
        .as_array()
        .into_iter()
        .flatten()
    {
        take(p["name"].as_str().unwrap_or_default(), &p["value"]);
    }
    for (name, value) in results {
        take(name, value);
    }
    let (url, commit) = (
        found.get("CHAINS-GIT_URL")?,
        found.get("CHAINS-GIT_COMMIT")?,
    );
    let uri = if std::path::Path::new(url)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("git"))
    {
        format!("git+{url}")
    } else {
        format!("git+{url}.git")
    };
    Some(Artifact {
        uri,
        digest: BTreeMap::from([("sha1".to_owned(), (*commit).to_owned())]),
        role: Some(INPUT_RESULT),
    })
}

/// Step and sidecar images as materials (`oci://<repo>` with the image id's digest).
fn step_images(run: &Run) -> Vec<Artifact> {
    let status = &run.object["status"];
    ["steps", "sidecars"]
        .iter()
        .flat_map(|k| status[k].as_array().into_iter().flatten())
        .filter_map(|s| {
            let id = s["imageID"].as_str()?;
            let id = id.strip_prefix("docker-pullable://").unwrap_or(id);
            let a = image_ref(id)?;
            Some(Artifact {
                uri: format!("oci://{}", a.uri),
                ..a
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::RunKind;
    use serde_json::json;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn run(results: &Value) -> Run {
        Run::from_object(
            RunKind::TaskRun,
            json!({"metadata": {"name": "r", "namespace": "n", "uid": "u"},
            "status": {"results": results, "steps": [{"name": "build", "imageID": format!("docker-pullable://gcr.io/kaniko@{D1}")}]}}),
        )
    }

    #[test]
    fn image_results_become_subjects_and_step_images_materials() {
        let out = RunArtifacts::of(
            &run(&json!([
                {"name": "IMAGE_URL", "value": "registry.local/app:v1"},
                {"name": "IMAGE_DIGEST", "value": D2},
                {"name": "IMAGES", "value": format!("registry.local/b@{D1}\nregistry.local/a@{D1}")}
            ])),
            &[],
        );
        let subjects = out.subjects(false, false);
        let names: Vec<&str> = subjects.iter().map(|a| a.uri.as_str()).collect();
        assert_eq!(
            names,
            [
                "registry.local/a",
                "registry.local/app:v1",
                "registry.local/b"
            ]
        );
        assert_eq!(out.images(false), subjects);
        assert_eq!(out.materials()[0].uri, "oci://gcr.io/kaniko");
        assert_eq!(out.rejected().count(), 0);
    }

    #[test]
    fn malformed_digests_are_rejected_not_used() {
        let out = RunArtifacts::of(
            &run(&json!([
                {"name": "IMAGE_URL", "value": "registry.local/app"},
                {"name": "IMAGE_DIGEST", "value": "sha256:abc"},
                {"name": "IMAGES", "value": "registry.local/x:latest"}
            ])),
            &[],
        );
        assert!(out.subjects(false, true).is_empty());
        assert_eq!(out.rejected().count(), 2, "{out:?}");
    }

    #[test]
    fn artifact_outputs_respect_is_build_artifact_when_asked() {
        let results = json!([
            {"name": "A_ARTIFACT_OUTPUTS", "value": {"uri": "pkg:a", "digest": D1, "isBuildArtifact": "true"}},
            {"name": "B_ARTIFACT_OUTPUTS", "value": {"uri": "pkg:b", "digest": D2}},
            {"name": "CHAINS-GIT_URL", "value": "https://git.local/repo"},
            {"name": "CHAINS-GIT_COMMIT", "value": "0123456789abcdef0123456789abcdef01234567"}
        ]);
        let out = RunArtifacts::of(&run(&results), &[]);
        assert_eq!(out.subjects(false, false).len(), 2);
        assert_eq!(out.subjects(true, false).len(), 1);
        let git = &out.materials();
        assert!(
            git.iter()
                .any(|m| m.uri == "git+https://git.local/repo.git")
        );
    }

    #[test]
    fn children_add_materials_always_and_subjects_only_when_deep() {
        let parent = run(&json!([{"name": "IMAGES", "value": format!("registry.local/p@{D1}")}]));
        let child = run(&json!([
            {"name": "IMAGES", "value": format!("registry.local/c@{D2}")},
            {"name": "CHAINS-GIT_URL", "value": "https://git.local/repo.git"},
            {"name": "CHAINS-GIT_COMMIT", "value": "0123456789abcdef0123456789abcdef01234567"}
        ]));
        let out = RunArtifacts::of(&parent, &[child]);
        assert_eq!(out.subjects(false, false).len(), 1);
        assert_eq!(out.subjects(false, true).len(), 2);
        assert_eq!(out.images(false).len(), 1);
        assert_eq!(out.images(true).len(), 2);
        // The step image, once though both runs report it, and the child's git material.
        assert_eq!(out.materials().len(), 2, "{:?}", out.materials());
    }
}
