//! Finds subjects (what a run built) and materials (what it used) from its results and
//! steps, with Chains' type-hinting rules. Every digest is validated; the output order is
//! deterministic (sorted, de-duplicated). Pure.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::run::Run;

/// An in-toto resource descriptor: `{name|uri, digest: {alg: hex}}`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Artifact {
    pub uri: String,
    pub digest: BTreeMap<String, String>,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Artifacts as in-toto descriptors, `key` being `name` (subjects) or `uri` (materials).
pub fn descriptors(list: &[Artifact], key: &str) -> Value {
    Value::Array(
        list.iter()
            .map(|a| serde_json::json!({key: a.uri, "digest": a.digest}))
            .collect(),
    )
}

/// What a run and (for a PipelineRun) its child TaskRuns built and used: the run's own
/// subjects (plus the children's with `deep`), and every material, sorted and de-duplicated.
pub fn extract_with_children(
    run: &Run,
    children: &[Run],
    only_build_artifacts: bool,
    deep: bool,
) -> Extracted {
    let mut out = extract(run, only_build_artifacts);
    for child in children {
        let c = extract(child, only_build_artifacts);
        out.materials.extend(c.materials);
        if deep {
            out.subjects.extend(c.subjects);
        }
    }
    for list in [&mut out.subjects, &mut out.materials] {
        list.sort();
        list.dedup();
    }
    out
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
    })
}

/// An image reference `repo@sha256:<hex>`, split.
fn image_ref(r: &str) -> Option<Artifact> {
    let (repo, digest) = r.trim().split_once('@')?;
    let a = artifact(repo, digest)?;
    (a.digest.contains_key("sha256") && !repo.is_empty()).then_some(a)
}

/// Subjects of a run and results that were ignored (with why), for logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extracted {
    pub subjects: Vec<Artifact>,
    pub materials: Vec<Artifact>,
    pub images: Vec<Artifact>,
    pub rejected: Vec<String>,
}

fn string_of(v: &Value) -> Option<&str> {
    v.as_str()
}

/// Applies the type-hinting rules to `run`'s results.
pub fn extract(run: &Run, only_build_artifacts: bool) -> Extracted {
    let results = run.results();
    let by_name: BTreeMap<&str, &Value> = results
        .iter()
        .map(|r| (r.name.as_str(), &r.value))
        .collect();
    let mut out = Extracted::default();
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
            let build = value["isBuildArtifact"].as_str() == Some("true")
                || value["isBuildArtifact"] == true;
            if only_build_artifacts && !build {
                continue;
            }
            match (value["uri"].as_str(), value["digest"].as_str()) {
                (Some(u), Some(d)) => match artifact(u, d) {
                    Some(a) => out.subjects.push(a),
                    None => out.rejected.push(format!("{name}: invalid digest {d:?}")),
                },
                _ => out.rejected.push(format!("{name}: needs uri and digest")),
            }
        } else if name.ends_with("ARTIFACT_INPUTS") {
            match (value["uri"].as_str(), value["digest"].as_str()) {
                (Some(u), Some(d)) => match artifact(u, d) {
                    Some(a) => out.materials.push(a),
                    None => out.rejected.push(format!("{name}: invalid digest {d:?}")),
                },
                _ => out.rejected.push(format!("{name}: needs uri and digest")),
            }
        }
    }
    if let (Some(url), Some(commit)) = (
        by_name.get("CHAINS-GIT_URL").and_then(|v| string_of(v)),
        by_name.get("CHAINS-GIT_COMMIT").and_then(|v| string_of(v)),
    ) {
        let uri = format!(
            "git+{}",
            if std::path::Path::new(url)
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("git"))
            {
                url.to_owned()
            } else {
                format!("{url}.git")
            }
        );
        out.materials.push(Artifact {
            uri,
            digest: BTreeMap::from([("sha1".to_owned(), commit.to_owned())]),
        });
    }
    for image in step_images(run) {
        out.materials.push(image);
    }
    out.subjects.extend(out.images.iter().cloned());
    for list in [&mut out.subjects, &mut out.materials, &mut out.images] {
        list.sort();
        list.dedup();
    }
    out
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
                digest: a.digest,
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
        let out = extract(
            &run(&json!([
                {"name": "IMAGE_URL", "value": "registry.local/app:v1"},
                {"name": "IMAGE_DIGEST", "value": D2},
                {"name": "IMAGES", "value": format!("registry.local/b@{D1}\nregistry.local/a@{D1}")}
            ])),
            false,
        );
        let names: Vec<&str> = out.subjects.iter().map(|a| a.uri.as_str()).collect();
        assert_eq!(
            names,
            [
                "registry.local/a",
                "registry.local/app:v1",
                "registry.local/b"
            ]
        );
        assert_eq!(out.materials[0].uri, "oci://gcr.io/kaniko");
        assert!(out.rejected.is_empty());
    }

    #[test]
    fn malformed_digests_are_rejected_not_used() {
        let out = extract(
            &run(&json!([
                {"name": "IMAGE_URL", "value": "registry.local/app"},
                {"name": "IMAGE_DIGEST", "value": "sha256:abc"},
                {"name": "IMAGES", "value": "registry.local/x:latest"}
            ])),
            false,
        );
        assert!(out.subjects.is_empty());
        assert_eq!(out.rejected.len(), 2, "{:?}", out.rejected);
    }

    #[test]
    fn artifact_outputs_respect_is_build_artifact_when_asked() {
        let results = json!([
            {"name": "A_ARTIFACT_OUTPUTS", "value": {"uri": "pkg:a", "digest": D1, "isBuildArtifact": "true"}},
            {"name": "B_ARTIFACT_OUTPUTS", "value": {"uri": "pkg:b", "digest": D2}},
            {"name": "CHAINS-GIT_URL", "value": "https://git.local/repo"},
            {"name": "CHAINS-GIT_COMMIT", "value": "0123456789abcdef0123456789abcdef01234567"}
        ]);
        assert_eq!(extract(&run(&results), false).subjects.len(), 2);
        assert_eq!(extract(&run(&results), true).subjects.len(), 1);
        let git = &extract(&run(&results), true).materials;
        assert!(
            git.iter()
                .any(|m| m.uri == "git+https://git.local/repo.git")
        );
    }
}
