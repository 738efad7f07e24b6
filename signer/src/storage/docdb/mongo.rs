//! MongoDB (and what speaks its wire protocol: DocumentDB, Cosmos DB, FerretDB), through the
//! official `mongodb` crate, with a document encoded as go-cloud's mongodocstore encodes
//! Chains' `SignedDocument`: field names as in Go, the ID field's value as `_id` (and not
//! repeated), bytes as binary (generic subtype), JSON numbers as doubles, and a fresh
//! `DocstoreRevision` on every write; written with an upserting `replaceOne` by `_id`, as
//! go-cloud's `Put` does.

use std::time::Duration;

use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{Binary, Bson, Document, doc};
use mongodb::options::ClientOptions;
use serde_json::Value;

use super::SignedDocument;

/// A JSON value as BSON, as Go's `interface{}` from `encoding/json` goes through go-cloud.
pub fn bson(value: &Value) -> Bson {
    match value {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Number(n) => Bson::Double(n.as_f64().unwrap_or_default()),
        Value::String(s) => Bson::String(s.clone()),
        Value::Array(items) => Bson::Array(items.iter().map(bson).collect()),
        Value::Object(map) => {
            Bson::Document(map.iter().map(|(k, v)| (k.clone(), bson(v))).collect())
        }
    }
}

/// A random revision, formatted as go-cloud's (a UUID).
fn revision() -> String {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 16];
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The document go-cloud stores for `document`.
pub fn encode(document: &SignedDocument, id_field: &str, revision_field: &str) -> Document {
    let mut out = Document::new();
    for (name, text) in [
        ("Signature", &document.signature),
        ("Cert", &document.cert),
        ("Chain", &document.chain),
        ("Name", &document.name),
    ] {
        out.insert(name, text.clone());
    }
    out.insert(
        "Signed",
        Binary {
            subtype: BinarySubtype::Generic,
            bytes: document.signed.clone(),
        },
    );
    out.insert("Object", bson(&document.object));
    let id = out.remove(id_field).unwrap_or(Bson::Null);
    out.insert("_id", id);
    out.insert(revision_field, revision());
    out
}

/// A collection and the client that writes to it.
pub struct Collection {
    inner: mongodb::Collection<Document>,
    id_field: String,
    revision_field: String,
}

impl std::fmt::Debug for Collection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The server URL holds credentials: never printed.
        f.debug_struct("Collection")
            .field("collection", &self.inner.namespace())
            .finish_non_exhaustive()
    }
}

impl Collection {
    /// A client of `server` (a `mongodb://` URL): connections are made at the first write.
    pub async fn new(
        server: &str,
        (database, collection): (&str, &str),
        (id_field, revision_field): (&str, &str),
    ) -> Result<Self, String> {
        let mut options = ClientOptions::parse(server)
            .await
            // The driver's message may quote the URL, and with it a password.
            .map_err(|_| "the MongoDB server URL does not parse".to_owned())?;
        options
            .app_name
            .get_or_insert_with(|| "signet-signer".to_owned());
        // A server that is down fails the attempt in seconds (the attempt is retried), not
        // after the driver's default 30 s.
        options.server_selection_timeout = Some(Duration::from_secs(3));
        options
            .connect_timeout
            .get_or_insert(Duration::from_secs(5));
        let client = mongodb::Client::with_options(options).map_err(|e| e.to_string())?;
        Ok(Self {
            inner: client.database(database).collection(collection),
            id_field: id_field.to_owned(),
            revision_field: revision_field.to_owned(),
        })
    }

    pub async fn put(&self, document: &SignedDocument) -> Result<(), String> {
        let encoded = encode(document, &self.id_field, &self.revision_field);
        let id = encoded.get("_id").cloned().unwrap_or(Bson::Null);
        if id == Bson::Null || id == Bson::String(String::new()) {
            return Err(format!("the document has no {}", self.id_field));
        }
        let result = self
            .inner
            .replace_one(doc! {"_id": id}, encoded)
            .upsert(true)
            .await
            .map_err(|e| format!("replaceOne in {}: {e}", self.inner.namespace()))?;
        if result.matched_count + u64::from(result.upserted_id.is_some()) != 1 {
            return Err(format!(
                "replaceOne in {}: the server matched {} and inserted {} documents",
                self.inner.namespace(),
                result.matched_count,
                u8::from(result.upserted_id.is_some())
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documents_are_encoded_as_go_cloud_encodes_them() {
        let document = SignedDocument {
            name: "taskrun-1".into(),
            signed: b"{}".to_vec(),
            signature: "c2ln".into(),
            cert: String::new(),
            chain: String::new(),
            object: json!({"a": [1, "x", null, true]}),
        };
        let encoded = encode(&document, "Name", "DocstoreRevision");
        assert_eq!(encoded.get_str("_id").unwrap(), "taskrun-1");
        assert!(
            encoded.get("Name").is_none(),
            "the ID field is stored as _id only"
        );
        assert_eq!(encoded.get_binary_generic("Signed").unwrap(), b"{}");
        assert_eq!(encoded.get_str("Cert").unwrap(), "");
        assert_eq!(
            encoded
                .get_document("Object")
                .unwrap()
                .get_array("a")
                .unwrap(),
            &vec![
                Bson::Double(1.0),
                Bson::String("x".into()),
                Bson::Null,
                Bson::Boolean(true)
            ]
        );
        let first = encoded.get_str("DocstoreRevision").unwrap().to_owned();
        assert_eq!(first.len(), 36);
        let again = encode(&document, "Name", "DocstoreRevision");
        assert_ne!(
            again.get_str("DocstoreRevision").unwrap(),
            first,
            "a fresh revision each write"
        );
    }
}
