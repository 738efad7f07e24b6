//! DynamoDB's `PutItem`, with a document encoded as go-cloud's awsdynamodb driver encodes
//! Chains' `SignedDocument`: strings as `S` (an empty string as `NULL`), bytes as `B`, JSON
//! numbers as `N` (Go's shortest decimal form), booleans as `BOOL`, null as `NULL`, arrays as
//! `L`, objects as `M`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use super::SignedDocument;
use crate::cloud::aws::AwsApi;
use crate::signing::kms::common::Named;

fn string(value: &str) -> Value {
    if value.is_empty() {
        json!({"NULL": true})
    } else {
        json!({"S": value})
    }
}

/// A JSON value as a DynamoDB attribute value.
pub fn attribute(value: &Value) -> Value {
    match value {
        Value::Null => json!({"NULL": true}),
        Value::Bool(b) => json!({"BOOL": b}),
        // Go decodes every JSON number into a float64 and formats it with 'f', -1.
        Value::Number(n) => json!({"N": go_float(n.as_f64().unwrap_or_default())}),
        Value::String(s) => string(s),
        Value::Array(items) => json!({"L": items.iter().map(attribute).collect::<Vec<_>>()}),
        Value::Object(map) => {
            json!({"M": map.iter().map(|(k, v)| (k.clone(), attribute(v))).collect::<Map<_, _>>()})
        }
    }
}

/// `strconv.FormatFloat(f, 'f', -1, 64)`: the shortest decimal that reads back as `f`, never
/// in exponent form — which is what Rust's `Display` of an `f64` prints.
pub fn go_float(f: f64) -> String {
    f.to_string()
}

/// The item go-cloud writes for `document`.
pub fn item(document: &SignedDocument) -> Value {
    json!({
        "Name": string(&document.name),
        "Signed": {"B": STANDARD.encode(&document.signed)},
        "Signature": string(&document.signature),
        "Cert": string(&document.cert),
        "Chain": string(&document.chain),
        "Object": attribute(&document.object),
    })
}

/// A DynamoDB table and the client that writes to it.
#[derive(Debug)]
pub struct Table {
    api: AwsApi,
    name: String,
    keys: Vec<String>,
}

impl Table {
    pub fn new(
        url: &str,
        table: &str,
        keys: Vec<String>,
        region: Option<&str>,
        endpoint: Option<&str>,
    ) -> Result<Self, String> {
        let endpoint = endpoint.map(|e| {
            if e.contains("://") {
                e.to_owned()
            } else {
                format!("https://{e}")
            }
        });
        let api = AwsApi::new(
            Named(url.to_owned()),
            "dynamodb",
            region.map(str::to_owned),
            endpoint,
        )?;
        Ok(Self {
            api,
            name: table.to_owned(),
            keys,
        })
    }

    pub async fn put(&self, document: &SignedDocument) -> Result<(), String> {
        for key in &self.keys {
            if document.string_field(key).is_none_or(str::is_empty) {
                return Err(format!(
                    "the document has no value for the table's key {key}"
                ));
            }
        }
        self.api
            .call(
                "application/x-amz-json-1.0",
                "DynamoDB_20120810.PutItem",
                &json!({"TableName": self.name, "Item": item(document)}),
            )
            .await
            .map(drop)
            .map_err(|e| e.to_string())
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
            object: json!({"a": [1, 2.5, "", null, true], "b": {"c": 1e21}}),
        };
        let item = item(&document);
        assert_eq!(item["Name"], json!({"S": "taskrun-1"}));
        assert_eq!(item["Signed"], json!({"B": "e30="}));
        assert_eq!(
            item["Cert"],
            json!({"NULL": true}),
            "empty strings are NULL"
        );
        assert_eq!(
            item["Object"]["M"]["a"]["L"],
            json!([{"N": "1"}, {"N": "2.5"}, {"NULL": true}, {"NULL": true}, {"BOOL": true}])
        );
        assert_eq!(
            item["Object"]["M"]["b"]["M"]["c"],
            json!({"N": "1000000000000000000000"})
        );
    }

    #[test]
    fn go_formats_floats_without_exponents() {
        assert_eq!(go_float(1.0), "1");
        assert_eq!(go_float(-3.0), "-3");
        assert_eq!(go_float(0.1), "0.1");
        assert_eq!(go_float(1e-7), "0.0000001");
        assert_eq!(go_float(123_456_789.125), "123456789.125");
    }
}
