//! Firestore, through its REST API (`PATCH …/documents/COLLECTION/ID`: create or replace),
//! with a document encoded as go-cloud's gcpfirestore driver encodes Chains'
//! `SignedDocument`: the name field becomes the document's ID and is left out of its fields;
//! strings as `stringValue`, bytes as `bytesValue`, JSON numbers as `doubleValue` (Go decodes
//! them into float64), booleans, nulls, arrays and maps as Firestore's own. The endpoint is
//! `https://firestore.googleapis.com`, or `CLOUDSDK_API_ENDPOINT_OVERRIDES_FIRESTORE`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use super::SignedDocument;
use crate::cloud::env;
use crate::cloud::google::GoogleAuth;
use crate::signing::kms::common::Named;

/// A JSON value as a Firestore `Value`.
pub fn value(value: &Value) -> Value {
    match value {
        Value::Null => json!({"nullValue": null}),
        Value::Bool(b) => json!({"booleanValue": b}),
        Value::Number(n) => json!({"doubleValue": n.as_f64().unwrap_or_default()}),
        Value::String(s) => json!({"stringValue": s}),
        Value::Array(items) => {
            json!({"arrayValue": {"values": items.iter().map(self::value).collect::<Vec<_>>()}})
        }
        Value::Object(map) => json!({"mapValue": {"fields": fields(map)}}),
    }
}

fn fields(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter().map(|(k, v)| (k.clone(), value(v))).collect()
}

/// The fields go-cloud writes for `document`, without the one that names it.
pub fn document_fields(document: &SignedDocument, name_field: &str) -> Value {
    let mut fields = Map::new();
    for (name, text) in [
        ("Name", &document.name),
        ("Signature", &document.signature),
        ("Cert", &document.cert),
        ("Chain", &document.chain),
    ] {
        fields.insert(name.to_owned(), json!({"stringValue": text}));
    }
    fields.insert(
        "Signed".to_owned(),
        json!({"bytesValue": STANDARD.encode(&document.signed)}),
    );
    fields.insert("Object".to_owned(), value(&document.object));
    fields.remove(name_field);
    json!({ "fields": fields })
}

/// A Firestore collection and the client that writes to it.
#[derive(Debug)]
pub struct Collection {
    auth: GoogleAuth,
    endpoint: String,
    path: String,
    name_field: String,
}

impl Collection {
    pub fn new(url: &str, collection: &str, name_field: &str) -> Result<Self, String> {
        let auth = GoogleAuth::from_env(Named(url.to_owned()))?;
        let endpoint = env("CLOUDSDK_API_ENDPOINT_OVERRIDES_FIRESTORE")
            .unwrap_or_else(|| auth.endpoint("firestore"))
            .trim_end_matches('/')
            .trim_end_matches("/v1")
            .to_owned();
        Ok(Self {
            auth,
            endpoint,
            path: collection.to_owned(),
            name_field: name_field.to_owned(),
        })
    }

    pub async fn put(&self, document: &SignedDocument) -> Result<(), String> {
        let id = document
            .string_field(&self.name_field)
            .filter(|id| !id.is_empty() && !id.contains('/'))
            .ok_or_else(|| format!("the document's {} is not a document ID", self.name_field))?;
        let name = format!("{}/{id}", self.path);
        let request = self
            .auth
            .http()
            .patch(format!("{}/v1/{name}", self.endpoint))
            .json(&document_fields(document, &self.name_field));
        let answer = self.auth.call(&format!("writing {name}"), request).await?;
        // The answer is the document as stored: it must be the one sent.
        if answer["name"].as_str() != Some(name.as_str()) {
            return Err(format!(
                "writing {name}: the answer names {:?}",
                answer["name"].as_str().unwrap_or_default()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_encoded_as_go_cloud_encodes_them() {
        let document = SignedDocument {
            name: "taskrun-1".into(),
            signed: b"{}".to_vec(),
            signature: "c2ln".into(),
            cert: String::new(),
            chain: String::new(),
            object: json!({"a": [1, "x", null], "b": {"c": false}}),
        };
        let body = document_fields(&document, "Name");
        let fields = &body["fields"];
        assert!(fields.get("Name").is_none(), "the name field is the ID");
        assert_eq!(fields["Signed"], json!({"bytesValue": "e30="}));
        assert_eq!(fields["Cert"], json!({"stringValue": ""}));
        assert_eq!(
            fields["Object"]["mapValue"]["fields"]["a"]["arrayValue"]["values"],
            json!([{"doubleValue": 1.0}, {"stringValue": "x"}, {"nullValue": null}])
        );
        assert_eq!(
            fields["Object"]["mapValue"]["fields"]["b"],
            json!({"mapValue": {"fields": {"c": {"booleanValue": false}}}})
        );
    }
}
