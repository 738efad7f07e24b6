//! The collections `storage.docdb.url` names, opened once and kept while the URL (and, for
//! MongoDB, the server URL) stays the same.

use std::collections::HashMap;
use std::sync::Arc;

use signet_config::SignerConfig;

use super::{CollectionUrl, SignedDocument, dynamodb, firestore, mongo};

#[derive(Debug)]
enum Open {
    DynamoDb(dynamodb::Table),
    Firestore(firestore::Collection),
    Mongo(mongo::Collection),
}

impl Open {
    async fn put(&self, document: &SignedDocument) -> Result<(), String> {
        match self {
            Self::DynamoDb(table) => table.put(document).await,
            Self::Firestore(collection) => collection.put(document).await,
            Self::Mongo(collection) => collection.put(document).await,
        }
    }
}

/// Open collections by URL (with the MongoDB server URL they were opened for).
/// An open collection, with the MongoDB server URL it was opened for.
type Opened = (Option<String>, Arc<Open>);

#[derive(Debug, Default)]
pub struct Collections {
    open: tokio::sync::Mutex<HashMap<String, Opened>>,
}

/// The MongoDB server's URL, as Chains finds it: `mongo-server-url-path`, the
/// `MONGO_SERVER_URL` file in `mongo-server-url-dir`, `mongo-server-url`, then the
/// `MONGO_SERVER_URL` variable. Files are read at each write (a rotated Secret is followed);
/// one trailing newline is dropped.
fn mongo_server(config: &SignerConfig) -> Result<String, String> {
    let storage = &config.storage;
    let read = |path: &std::path::Path, key: &str| {
        std::fs::read_to_string(path)
            .map(|text| text.strip_suffix('\n').unwrap_or(&text).to_owned())
            .map_err(|e| format!("{key} {}: {e}", path.display()))
    };
    if let Some(path) = &storage.docdb_mongo_server_url_path {
        return read(path.as_ref(), "storage.docdb.mongo-server-url-path");
    }
    if let Some(dir) = &storage.docdb_mongo_server_url_dir {
        return read(
            &std::path::Path::new(dir).join("MONGO_SERVER_URL"),
            "storage.docdb.mongo-server-url-dir",
        );
    }
    if let Some(url) = &storage.docdb_mongo_server_url {
        return Ok(url.clone());
    }
    crate::cloud::env("MONGO_SERVER_URL").ok_or_else(|| {
        "mongo:// needs the server's URL: set storage.docdb.mongo-server-url-path, -url-dir, -url or MONGO_SERVER_URL".to_owned()
    })
}

impl Collections {
    /// Writes `document` to the collection the configuration names.
    pub async fn put(
        &self,
        config: &SignerConfig,
        document: &SignedDocument,
    ) -> Result<(), String> {
        let url = config
            .storage
            .docdb_url
            .as_deref()
            .ok_or("storage.docdb.url is not set")?;
        let parsed = CollectionUrl::parse(url)?;
        let server = match &parsed {
            CollectionUrl::Mongo { .. } => Some(mongo_server(config)?),
            _ => None,
        };
        let open = {
            let mut open = self.open.lock().await;
            match open.get(url) {
                Some((opened_for, collection)) if *opened_for == server => collection.clone(),
                _ => {
                    let collection = Arc::new(Self::open(url, &parsed, server.as_deref()).await?);
                    // One entry per URL: a new server URL replaces the client of the old one.
                    open.insert(url.to_owned(), (server, collection.clone()));
                    collection
                }
            }
        };
        open.put(document).await
    }

    async fn open(url: &str, parsed: &CollectionUrl, server: Option<&str>) -> Result<Open, String> {
        Ok(match parsed {
            CollectionUrl::DynamoDb {
                table,
                partition_key,
                sort_key,
                region,
                endpoint,
            } => Open::DynamoDb(dynamodb::Table::new(
                url,
                table,
                std::iter::once(partition_key.clone())
                    .chain(sort_key.clone())
                    .collect(),
                region.as_deref(),
                endpoint.as_deref(),
            )?),
            CollectionUrl::Firestore {
                collection,
                name_field,
            } => Open::Firestore(firestore::Collection::new(url, collection, name_field)?),
            CollectionUrl::Mongo {
                database,
                collection,
                id_field,
                revision_field,
            } => Open::Mongo(
                mongo::Collection::new(
                    server.unwrap_or_default(),
                    (database, collection),
                    (id_field, revision_field),
                )
                .await?,
            ),
        })
    }
}
