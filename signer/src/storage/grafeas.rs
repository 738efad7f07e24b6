//! The `grafeas` backend: notes and occurrences in Container Analysis (Grafeas v1), as Chains
//! writes them. Notes `<noteid>-simplesigning` (ATTESTATION, hint `storage.grafeas.notehint`)
//! and `<noteid>-intoto` (BUILD) in project `storage.grafeas.projectid`, `<noteid>` being
//! `storage.grafeas.noteid` or `tekton-<namespace>`; created once (an existing note is
//! fine). Occurrences:
//!
//! - per signed image, an ATTESTATION occurrence on `IMAGE@DIGEST`: the simple-signing payload
//!   and its raw signature, also as a DSSE-style `envelope`;
//! - per image the run built, and (unlike Chains, which writes none for a run without images)
//!   per run on `/apis/tekton.dev/v1/namespaces/NS/<TaskRun|PipelineRun>/NAME@UID`, a BUILD
//!   occurrence: the in-toto statement as Grafeas' proto (`intotoStatement` with
//!   `slsaProvenanceZeroTwo` for SLSA v0.2, `inTotoSlsaProvenanceV1` for SLSA v1.0), and the
//!   envelope with the statement and the signature Chains stores (the DSSE envelope).
//!
//! Signatures name `signers.kms.kmsref` as their key id, as Chains does (empty for keys from the
//! signing Secret). The client (feature `grafeas`) is Container Analysis' REST API with the
//! Google credentials of the gcpkms signer; endpoint `https://containeranalysis.googleapis.com`
//! or `CLOUDSDK_API_ENDPOINT_OVERRIDES_CONTAINERANALYSIS`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use signet_config::SignerConfig;

use super::{Attestation, Backend, ImageSignature, Signed, Write};
use crate::run::Run;
use crate::signing::SignError;

/// One occurrence to create, with the note it belongs to.
#[derive(Clone, Debug, PartialEq)]
pub struct Occurrence {
    /// `projects/<project>`.
    pub project: String,
    /// The note's id in the project (`…-simplesigning`, `…-intoto`).
    pub note_id: String,
    /// The note, as created if it does not exist.
    pub note: Value,
    /// The occurrence, without its `noteName`.
    pub occurrence: Value,
}

pub struct Grafeas;

const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const IN_TOTO: &str = "application/vnd.in-toto+json";

fn project(run: &Run, config: &SignerConfig) -> Result<(String, String), SignError> {
    let project = config
        .storage
        .grafeas_project_id
        .as_deref()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| SignError::Storage {
            run: run.id(),
            backend: "grafeas",
            message: "storage.grafeas.projectid is not set".to_owned(),
        })?;
    let note = config
        .storage
        .grafeas_note_id
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("tekton-{}", run.namespace));
    Ok((format!("projects/{project}"), note))
}

fn envelope(payload: &[u8], payload_type: &str, signature: &[u8], key_id: &str) -> Value {
    json!({
        "payload": STANDARD.encode(payload),
        "payloadType": payload_type,
        "signatures": [{"sig": STANDARD.encode(signature), "keyid": key_id}],
    })
}

/// The in-toto statement as Grafeas' proto JSON, in the build occurrence field that fits its
/// predicate: `(field, value)`.
pub fn build_details(statement: &Value) -> (&'static str, Value) {
    let predicate_type = statement["predicateType"].as_str().unwrap_or_default();
    let subject: Vec<Value> = statement["subject"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| json!({"name": s["name"], "digest": s["digest"]}))
        .collect();
    let p = &statement["predicate"];
    if predicate_type == "https://slsa.dev/provenance/v1" {
        let definition = &p["buildDefinition"];
        let details = &p["runDetails"];
        let predicate = json!({
            "buildDefinition": {
                "buildType": definition["buildType"],
                "externalParameters": definition["externalParameters"],
                "internalParameters": definition["internalParameters"],
                "resolvedDependencies": definition["resolvedDependencies"],
            },
            "runDetails": {
                "builder": details["builder"],
                "metadata": details["metadata"],
                "byproducts": details["byproducts"],
            },
        });
        let mut out = json!({"type": statement["_type"], "subject": subject,
                             "predicateType": predicate_type, "predicate": predicate});
        prune(&mut out);
        return ("inTotoSlsaProvenanceV1", out);
    }
    let mut out =
        json!({"type": statement["_type"], "subject": subject, "predicateType": predicate_type});
    if predicate_type == "https://slsa.dev/provenance/v0.2" {
        let metadata = &p["metadata"];
        let invocation = &p["invocation"];
        out["slsaProvenanceZeroTwo"] = json!({
            "builder": {"id": p["builder"]["id"]},
            "buildType": p["buildType"],
            "invocation": {
                "configSource": {
                    "uri": invocation["configSource"]["uri"],
                    "digest": invocation["configSource"]["digest"],
                    "entryPoint": invocation["configSource"]["entryPoint"],
                },
                "parameters": invocation["parameters"],
                "environment": invocation["environment"],
            },
            "buildConfig": p["buildConfig"],
            "metadata": {
                "buildInvocationId": metadata["buildInvocationID"],
                "buildStartedOn": metadata["buildStartedOn"],
                "buildFinishedOn": metadata["buildFinishedOn"],
                "completeness": metadata["completeness"],
                "reproducible": metadata["reproducible"],
            },
            "materials": p["materials"],
        });
    }
    prune(&mut out);
    ("intotoStatement", out)
}

/// Drops nulls and empty objects (proto JSON has no null for a message or a scalar, and the
/// statement leaves out what a run does not have).
fn prune(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for v in map.values_mut() {
                prune(v);
            }
            map.retain(|_, v| !v.is_null() && v.as_object().is_none_or(|o| !o.is_empty()));
        }
        Value::Array(items) => items.iter_mut().for_each(prune),
        _ => {}
    }
}

impl Backend for Grafeas {
    fn attestation(
        &self,
        run: &Run,
        config: &SignerConfig,
        attestation: &Attestation<'_>,
        out: &mut Signed,
    ) -> Result<(), SignError> {
        let (project, note) = project(run, config)?;
        let statement: Value =
            serde_json::from_slice(attestation.payload).map_err(|e| SignError::Other {
                run: run.id(),
                message: format!("grafeas: the statement is not JSON: {e}"),
            })?;
        let (field, details) = build_details(&statement);
        let key_id = config.kms.kmsref.clone().unwrap_or_default();
        // The run's API version, as Chains names the builder.
        let (note_id, note_body) = (
            format!("{note}-intoto"),
            json!({"shortDescription": "Build Provenance Note",
                   "build": {"builderVersion": "tekton.dev/v1"}}),
        );
        let run_uri = format!(
            "/apis/tekton.dev/v1/namespaces/{}/{}/{}@{}",
            run.namespace,
            run.kind.kind(),
            run.name,
            run.uid
        );
        let uris = attestation
            .images
            .iter()
            .map(ToString::to_string)
            .chain(std::iter::once(run_uri));
        for uri in uris {
            let mut build = Map::new();
            build.insert(field.to_owned(), details.clone());
            out.writes.push(Write::Grafeas(Occurrence {
                project: project.clone(),
                note_id: note_id.clone(),
                note: note_body.clone(),
                occurrence: json!({
                    "resourceUri": uri,
                    "build": build,
                    "envelope": envelope(attestation.payload, IN_TOTO, attestation.envelope, &key_id),
                }),
            }));
        }
        Ok(())
    }

    fn image_signature(
        &self,
        run: &Run,
        config: &SignerConfig,
        signature: &ImageSignature<'_>,
        out: &mut Signed,
    ) -> Result<(), SignError> {
        let (project, note) = project(run, config)?;
        let raw = STANDARD
            .decode(signature.signature)
            .map_err(|e| SignError::Other {
                run: run.id(),
                message: format!("image signature: {e}"),
            })?;
        let key_id = config.kms.kmsref.clone().unwrap_or_default();
        out.writes.push(Write::Grafeas(Occurrence {
            project,
            note_id: format!("{note}-simplesigning"),
            note: json!({"shortDescription": "OCI Artifact Attestation Note",
                         "attestation": {"hint": {"humanReadableName": config.storage.grafeas_note_hint}}}),
            occurrence: json!({
                "resourceUri": signature.image.to_string(),
                "attestation": {
                    "serializedPayload": STANDARD.encode(signature.payload),
                    "signatures": [{"signature": STANDARD.encode(&raw), "publicKeyId": key_id}],
                },
                "envelope": envelope(signature.payload, SIMPLE_SIGNING, &raw, &key_id),
            }),
        }));
        Ok(())
    }
}

#[cfg(feature = "grafeas")]
pub use client::GrafeasClient;

#[cfg(feature = "grafeas")]
mod client {
    use std::collections::HashSet;

    use serde_json::Value;

    use super::Occurrence;
    use crate::cloud::env;
    use crate::cloud::google::GoogleAuth;
    use crate::signing::kms::common::Named;

    /// Container Analysis' REST API with the pod's Google credentials.
    #[derive(Debug)]
    pub struct GrafeasClient {
        auth: GoogleAuth,
        endpoint: String,
        /// Notes known to exist (created, or found existing), by full name.
        notes: tokio::sync::Mutex<HashSet<String>>,
    }

    impl GrafeasClient {
        pub fn from_env() -> Result<Self, String> {
            let override_ = env("CLOUDSDK_API_ENDPOINT_OVERRIDES_CONTAINERANALYSIS");
            let named = override_.as_deref().unwrap_or("containeranalysis");
            let auth = GoogleAuth::from_env(Named(format!("grafeas {named}")))?;
            let endpoint = override_
                .unwrap_or_else(|| auth.endpoint("containeranalysis"))
                .trim_end_matches('/')
                .trim_end_matches("/v1")
                .to_owned();
            Ok(Self {
                auth,
                endpoint,
                notes: tokio::sync::Mutex::default(),
            })
        }

        async fn post(
            &self,
            path: &str,
            body: &Value,
        ) -> Result<(reqwest::StatusCode, Value), String> {
            let request = self
                .auth
                .http()
                .post(format!("{}/v1/{path}", self.endpoint))
                .json(body);
            self.auth.send(&format!("POST {path}"), request).await
        }

        /// Creates the occurrence, and its note first unless it is known to exist.
        pub async fn create(&self, occurrence: &Occurrence) -> Result<(), String> {
            let note_name = format!("{}/notes/{}", occurrence.project, occurrence.note_id);
            // Held while the note is created, so that concurrent writes create it once.
            let mut notes = self.notes.lock().await;
            if !notes.contains(&note_name) {
                let (status, answer) = self
                    .post(
                        &format!("{}/notes?noteId={}", occurrence.project, occurrence.note_id),
                        &occurrence.note,
                    )
                    .await?;
                // An existing note (409 ALREADY_EXISTS) is the note we want.
                if !status.is_success() && status != reqwest::StatusCode::CONFLICT {
                    return Err(format!(
                        "creating note {note_name}: {status}: {}",
                        answer["error"]["message"].as_str().unwrap_or("no details")
                    ));
                }
                notes.insert(note_name.clone());
            }
            drop(notes);
            let mut body = occurrence.occurrence.clone();
            body["noteName"] = Value::String(note_name.clone());
            let (status, answer) = self
                .post(&format!("{}/occurrences", occurrence.project), &body)
                .await?;
            if !status.is_success() {
                return Err(format!(
                    "creating an occurrence of {note_name} on {}: {status}: {}",
                    body["resourceUri"].as_str().unwrap_or_default(),
                    answer["error"]["message"].as_str().unwrap_or("no details")
                ));
            }
            // The answer is the occurrence as stored: of this note, on this resource.
            if answer["noteName"] != body["noteName"]
                || answer["resourceUri"] != body["resourceUri"]
            {
                return Err(format!(
                    "creating an occurrence of {note_name}: the answer is of {} on {}",
                    answer["noteName"], answer["resourceUri"]
                ));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slsa_v02_statements_become_grafeas_slsa_provenance_zero_two() {
        let statement = json!({
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": "https://slsa.dev/provenance/v0.2",
            "subject": [{"name": "r/app", "digest": {"sha256": "ab"}}],
            "predicate": {
                "builder": {"id": "https://tekton.dev/chains/v2"},
                "buildType": "tekton.dev/v1beta1/TaskRun",
                "invocation": {"configSource": {}, "parameters": {"p": "v"}, "environment": null},
                "buildConfig": {"steps": []},
                "metadata": {"buildInvocationID": "uid", "buildStartedOn": "2026-11-26T10:00:00Z",
                             "completeness": {"parameters": false, "environment": false, "materials": false},
                             "reproducible": false},
                "materials": [{"uri": "oci://x", "digest": {"sha256": "cd"}}]
            }
        });
        let (field, details) = build_details(&statement);
        assert_eq!(field, "intotoStatement");
        let p = &details["slsaProvenanceZeroTwo"];
        assert_eq!(p["metadata"]["buildInvocationId"], "uid");
        assert!(
            p["invocation"].get("configSource").is_none(),
            "empty messages are left out"
        );
        assert!(
            p["invocation"].get("environment").is_none(),
            "nulls are left out"
        );
        assert_eq!(p["materials"][0]["digest"]["sha256"], "cd");
        assert_eq!(details["subject"][0]["name"], "r/app");
    }

    #[test]
    fn slsa_v1_statements_become_in_toto_slsa_provenance_v1() {
        let statement = json!({
            "_type": "https://in-toto.io/Statement/v1",
            "predicateType": "https://slsa.dev/provenance/v1",
            "subject": [],
            "predicate": {"buildDefinition": {"buildType": "t", "externalParameters": {"a": 1}},
                          "runDetails": {"builder": {"id": "b"}, "metadata": {"invocationId": "i"}}}
        });
        let (field, details) = build_details(&statement);
        assert_eq!(field, "inTotoSlsaProvenanceV1");
        assert_eq!(
            details["predicate"]["runDetails"]["metadata"]["invocationId"],
            "i"
        );
        assert!(
            details["predicate"]["buildDefinition"]
                .get("internalParameters")
                .is_none()
        );
    }
}
