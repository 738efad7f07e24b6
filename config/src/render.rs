//! Writing `SignerConfig` back to ConfigMap data: every key, explicitly, so a reader of the
//! ConfigMap sees the values in force without knowing Chains' defaults.

use std::collections::{BTreeMap, BTreeSet};

use super::{ArtifactConfig, SignerConfig, StorageBackend};

fn storage_list(set: &BTreeSet<StorageBackend>) -> String {
    set.iter().map(|b| b.as_str()).collect::<Vec<_>>().join(",")
}

impl SignerConfig {
    /// The ConfigMap data that `SignerConfig::parse` reads back as `self`.
    pub fn render(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut put = |key: &str, value: String| {
            out.insert(key.to_owned(), value);
        };
        let mut artifact = |kind: &str, a: &ArtifactConfig| {
            put(&format!("artifacts.{kind}.format"), a.format.to_string());
            put(
                &format!("artifacts.{kind}.storage"),
                storage_list(&a.storage),
            );
            put(&format!("artifacts.{kind}.signer"), a.signer.to_string());
        };
        artifact("taskrun", &self.taskrun);
        artifact("pipelinerun", &self.pipelinerun);
        put(
            "artifacts.pipelinerun.enable-deep-inspection",
            self.pipelinerun_deep_inspection.to_string(),
        );
        put("artifacts.oci.format", self.oci.format.to_string());
        put("artifacts.oci.storage", storage_list(&self.oci.storage));
        put("artifacts.oci.signer", self.oci.signer.to_string());

        let s = &self.storage;
        put(
            "storage.oci.repository.insecure",
            s.oci_insecure.to_string(),
        );
        put("storage.oci.encoding-format", s.oci_encoding.to_string());
        put("storage.grafeas.notehint", s.grafeas_note_hint.clone());
        put("transparency.enabled", self.transparency.mode.to_string());
        put("transparency.url", self.transparency.url.clone());
        put(
            "transparency.version",
            self.transparency.version.to_string(),
        );
        let x = &self.x509;
        put("signers.x509.fulcio.enabled", x.fulcio_enabled.to_string());
        put("signers.x509.fulcio.address", x.fulcio_address.clone());
        put("signers.x509.fulcio.issuer", x.fulcio_issuer.clone());
        put("signers.x509.tuf.mirror.url", x.tuf_mirror_url.clone());
        put("builder.id", self.builder_id.clone());
        put("builddefinition.buildtype", self.build_type.to_string());

        let k = &self.kms;
        let optional = [
            ("storage.oci.repository", &s.oci_repository),
            ("storage.gcs.bucket", &s.gcs_bucket),
            ("storage.docdb.url", &s.docdb_url),
            ("storage.docdb.mongo-server-url", &s.docdb_mongo_server_url),
            (
                "storage.docdb.mongo-server-url-dir",
                &s.docdb_mongo_server_url_dir,
            ),
            (
                "storage.docdb.mongo-server-url-path",
                &s.docdb_mongo_server_url_path,
            ),
            ("storage.grafeas.projectid", &s.grafeas_project_id),
            ("storage.grafeas.noteid", &s.grafeas_note_id),
            ("storage.pubsub.provider", &s.pubsub_provider),
            ("storage.pubsub.topic", &s.pubsub_topic),
            (
                "storage.pubsub.kafka.bootstrap.servers",
                &s.pubsub_kafka_bootstrap_servers,
            ),
            ("storage.archivista.url", &s.archivista_url),
            (
                "transparency.timestamp.url",
                &self.transparency.timestamp_url,
            ),
            ("signers.x509.identity.token.file", &x.identity_token_file),
            ("signers.kms.kmsref", &k.kmsref),
            ("signers.kms.auth.address", &k.auth_address),
            ("signers.kms.auth.token-path", &k.auth_token_path),
            ("signers.kms.auth.oidc.path", &k.auth_oidc_path),
            ("signers.kms.auth.oidc.role", &k.auth_oidc_role),
            ("signers.kms.auth.oidc.token-path", &k.auth_oidc_token_path),
            ("signers.kms.auth.spire.sock", &k.auth_spire_sock),
            ("signers.kms.auth.spire.audience", &k.auth_spire_audience),
        ];
        for (key, value) in optional {
            if let Some(v) = value {
                put(key, v.clone());
            }
        }
        self.render_flags(&mut out);
        out
    }

    /// The switches, the inline Vault token, the trusted root and the managed-by list.
    fn render_flags(&self, out: &mut BTreeMap<String, String>) {
        let mut put = |key: &str, value: String| {
            out.insert(key.to_owned(), value);
        };
        let k = &self.kms;
        for (key, on) in [
            ("signers.kms.auth.insecure", k.auth_insecure),
            (crate::parse::TOFU_KEY, self.insecure_trust_on_first_use),
        ] {
            if on {
                put(key, "true".to_owned());
            }
        }
        if let Some(token) = &k.auth_token {
            put("signers.kms.auth.token", token.expose().to_owned());
        }
        if let Some(p) = self.x509.fulcio_provider {
            put("signers.x509.fulcio.provider", p.to_string());
        }
        if let Some(root) = &self.trusted_root {
            put(crate::TRUSTED_ROOT_KEY, root.text.clone());
        }
        if !self.managed_by.is_empty() {
            let names: Vec<&str> = self.managed_by.iter().map(String::as_str).collect();
            put("filter.managed-by", names.join(","));
        }
    }
}
