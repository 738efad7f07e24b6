//! `storage.docdb.url`: the go-cloud docstore URLs Chains opens — `dynamodb://`, `firestore://`
//! and `mongo://` — parsed and checked the way go-cloud's URL openers check them, so that the
//! operator refuses a URL the signer could not open.

/// A `storage.docdb.url`, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CollectionUrl {
    DynamoDb {
        table: String,
        partition_key: String,
        sort_key: Option<String>,
        region: Option<String>,
        endpoint: Option<String>,
    },
    Firestore {
        /// `projects/P/databases/D/documents/COLLECTION`.
        collection: String,
        name_field: String,
    },
    Mongo {
        database: String,
        collection: String,
        id_field: String,
        revision_field: String,
    },
}

/// go-cloud's default revision field.
pub const DEFAULT_REVISION_FIELD: &str = "DocstoreRevision";

/// The string fields of Chains' `SignedDocument` a collection can be keyed by.
pub const KEY_FIELDS: [&str; 4] = ["Name", "Signature", "Cert", "Chain"];

fn key_field(field: &str, param: &str) -> Result<String, String> {
    if !KEY_FIELDS.contains(&field) {
        return Err(format!(
            "{param}={field:?} is not a string field of Chains' documents (Name, Signature, Cert, Chain): use {param}=Name"
        ));
    }
    Ok(field.to_owned())
}

impl CollectionUrl {
    pub fn parse(url: &str) -> Result<Self, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("{url:?} is not a URL"))?;
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut params = std::collections::BTreeMap::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            params.insert(key.to_owned(), value.to_owned());
        }
        let mut take = |key: &str| params.remove(key).filter(|v| !v.is_empty());
        let parsed = match scheme {
            "dynamodb" => {
                if location.is_empty() || location.contains('/') {
                    return Err("expected dynamodb://TABLE?partition_key=Name".to_owned());
                }
                let partition_key = take("partition_key")
                    .ok_or("dynamodb:// needs partition_key (e.g. partition_key=Name)")?;
                let sort_key = take("sort_key");
                // go-cloud's options that change nothing for a PutItem.
                let _ = (take("allow_scans"), take("awssdk"));
                Self::DynamoDb {
                    table: location.to_owned(),
                    partition_key: key_field(&partition_key, "partition_key")?,
                    sort_key: sort_key.map(|k| key_field(&k, "sort_key")).transpose()?,
                    region: take("region"),
                    endpoint: take("endpoint"),
                }
            }
            "firestore" => {
                let parts: Vec<&str> = location.split('/').collect();
                let ok = parts.len() >= 6
                    && parts.len().is_multiple_of(2)
                    && parts[0] == "projects"
                    && parts[2] == "databases"
                    && parts[4] == "documents"
                    && parts.iter().all(|p| !p.is_empty());
                if !ok {
                    return Err(
                        "expected firestore://projects/P/databases/D/documents/COLLECTION?name_field=Name"
                            .to_owned(),
                    );
                }
                let name_field =
                    take("name_field").ok_or("firestore:// needs name_field (name_field=Name)")?;
                Self::Firestore {
                    collection: location.to_owned(),
                    name_field: key_field(&name_field, "name_field")?,
                }
            }
            "mongo" => {
                let (database, collection) = location
                    .split_once('/')
                    .filter(|(d, c)| !d.is_empty() && !c.is_empty())
                    .ok_or("expected mongo://DATABASE/COLLECTION?id_field=Name")?;
                let id_field = take("id_field").ok_or(
                    "mongo:// needs id_field=Name: Chains' documents have no _id field of their own",
                )?;
                Self::Mongo {
                    database: database.to_owned(),
                    collection: collection.to_owned(),
                    id_field: key_field(&id_field, "id_field")?,
                    revision_field: take("revision_field")
                        .unwrap_or_else(|| DEFAULT_REVISION_FIELD.to_owned()),
                }
            }
            other => {
                return Err(format!(
                    "scheme {other}:// is not a document store Signet writes to: use dynamodb://, firestore:// or mongo://"
                ));
            }
        };
        if let Some(unknown) = params.keys().next() {
            return Err(format!("unknown query parameter {unknown:?} in {url:?}"));
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_urls_are_those_go_cloud_opens() {
        assert_eq!(
            CollectionUrl::parse("dynamodb://chains?partition_key=Name&region=eu-west-1").unwrap(),
            CollectionUrl::DynamoDb {
                table: "chains".into(),
                partition_key: "Name".into(),
                sort_key: None,
                region: Some("eu-west-1".into()),
                endpoint: None,
            }
        );
        assert_eq!(
            CollectionUrl::parse(
                "firestore://projects/p/databases/(default)/documents/chains?name_field=Name"
            )
            .unwrap(),
            CollectionUrl::Firestore {
                collection: "projects/p/databases/(default)/documents/chains".into(),
                name_field: "Name".into(),
            }
        );
        assert_eq!(
            CollectionUrl::parse("mongo://tekton-chains/attestations?id_field=Name").unwrap(),
            CollectionUrl::Mongo {
                database: "tekton-chains".into(),
                collection: "attestations".into(),
                id_field: "Name".into(),
                revision_field: DEFAULT_REVISION_FIELD.into(),
            }
        );
        for (bad, says) in [
            ("dynamodb://chains", "partition_key"),
            (
                "dynamodb://chains?partition_key=Object",
                "not a string field",
            ),
            (
                "firestore://projects/p/databases/d/documents/c",
                "name_field",
            ),
            (
                "firestore://projects/p/documents/c?name_field=Name",
                "expected",
            ),
            ("mongo://db?id_field=Name", "expected"),
            ("mongo://db/c", "id_field"),
            (
                "mongo://db/c?id_field=Name&lowercase=1",
                "unknown query parameter",
            ),
            ("s3://bucket", "not a document store"),
            ("chains", "not a URL"),
        ] {
            let err = CollectionUrl::parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
