//! A namespace per test, created with the restricted Pod Security level and deleted when the
//! test ends (pass or fail).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client};

use crate::env::{EnvError, TestEnv};

/// Label on every namespace a test creates, so leftovers can be found.
pub const TEST_LABEL: &str = "signet.dev/e2e";

/// A namespace that exists for one test and is deleted on drop.
#[derive(Debug)]
pub struct TestNamespace {
    name: String,
    env: &'static TestEnv,
}

impl TestNamespace {
    /// Creates `<prefix>-<pid>-<n>` with Pod Security `restricted` enforced, as the namespace
    /// the operator installs the signer into will have.
    pub async fn create(client: &Client, prefix: &str) -> Result<Self, EnvError> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let labels = BTreeMap::from([
            (TEST_LABEL.to_owned(), "true".to_owned()),
            (
                "pod-security.kubernetes.io/enforce".to_owned(),
                "restricted".to_owned(),
            ),
        ]);
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        Ok(Self {
            name,
            env: TestEnv::get(),
        })
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime may be shutting down: delete from a
        // thread with a runtime of its own, and wait so the test ends with nothing left over.
        let name = std::mem::take(&mut self.name);
        let env = self.env;
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let client = env.admin_client().map_err(|e| e.to_string())?;
                Api::<Namespace>::all(client)
                    .delete(&name, &DeleteParams::background())
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("failed to delete test namespace {name}: {e}"))
            })
        })
        .join();
        if let Ok(Err(message)) = deleted {
            eprintln!("{message}");
        }
    }
}
