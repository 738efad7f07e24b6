//! Acting as a ServiceAccount: tokens from the TokenRequest API and clients that use them, so
//! a process under test has exactly the rights the manifests grant and no more.

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{ObjectMeta, PostParams};
use kube::config::AuthInfo;
use kube::{Api, Client};

use crate::env::{EnvError, TestEnv};

/// A ServiceAccount and a freshly minted token for it.
#[derive(Clone)]
pub struct ServiceAccountIdentity {
    pub namespace: String,
    pub name: String,
    /// The JWT; never print it.
    pub token: String,
}

impl std::fmt::Debug for ServiceAccountIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountIdentity")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ServiceAccountIdentity {
    /// Creates the ServiceAccount if needed and mints a token for `audiences` (the API
    /// server's own audience when empty), valid for `seconds`.
    pub async fn mint(
        admin: &Client,
        namespace: &str,
        name: &str,
        audiences: &[&str],
        seconds: i64,
    ) -> Result<Self, EnvError> {
        let accounts = Api::<ServiceAccount>::namespaced(admin.clone(), namespace);
        if accounts.get_opt(name).await?.is_none() {
            let sa = ServiceAccount {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    ..ObjectMeta::default()
                },
                ..ServiceAccount::default()
            };
            accounts.create(&PostParams::default(), &sa).await?;
        }
        let audiences: Vec<String> = audiences.iter().map(|a| (*a).to_owned()).collect();
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: (!audiences.is_empty()).then_some(audiences),
                expiration_seconds: Some(seconds),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        let response: TokenRequest = accounts
            .create_subresource("token", name, &PostParams::default(), &request)
            .await?;
        let token = response
            .status
            .and_then(|s| s.token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| EnvError::NoToken(format!("{namespace}/{name}")))?;
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            token,
        })
    }

    /// `system:serviceaccount:<namespace>:<name>`, the token's subject and RBAC user name.
    pub fn subject(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }

    /// A client that authenticates with this token only.
    pub fn client(&self, env: &TestEnv) -> Result<Client, EnvError> {
        let auth = AuthInfo {
            token: Some(self.token.clone().into()),
            ..AuthInfo::default()
        };
        Ok(Client::try_from(env.config_with(auth))?)
    }
}
