//! Installs Signet from the committed OLM bundle the way OLM's install strategy does: the
//! CRD and the cluster roles from `bundle/manifests`, then for the CSV's `clusterPermissions` a ServiceAccount, a
//! ClusterRole and a ClusterRoleBinding (for `permissions` a Role and RoleBinding), and the
//! CSV's Deployments in the install namespace. Tests read the files, not the generator, so
//! what they prove holds for what users install.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use signet_operator::install::{CRD_FILE, CSV_FILE};

use crate::env::{EnvError, repo_root};
use crate::identity::ServiceAccountIdentity;

/// The committed bundle's CSV and CRD.
#[derive(Clone, Debug)]
pub struct Bundle {
    pub csv: Value,
    pub crd: CustomResourceDefinition,
}

fn bad(what: &str, message: impl std::fmt::Display) -> EnvError {
    EnvError::Bundle(format!("{what}: {message}"))
}

fn read_yaml<T: serde::de::DeserializeOwned>(file: &str) -> Result<T, EnvError> {
    let path = repo_root().join("bundle/manifests").join(file);
    let text = std::fs::read_to_string(&path).map_err(|source| EnvError::Read {
        path: path.clone(),
        source,
    })?;
    serde_saphyr::from_str(&text).map_err(|e| bad(file, e))
}

impl Bundle {
    /// Reads `bundle/manifests`.
    pub fn committed() -> Result<Self, EnvError> {
        Ok(Self {
            csv: read_yaml(CSV_FILE)?,
            crd: read_yaml(CRD_FILE)?,
        })
    }

    fn strategy(&self) -> &Value {
        &self.csv["spec"]["install"]["spec"]
    }

    /// The first `alm-examples` object: the SignetConfig the console offers users.
    pub fn example(&self) -> Result<Value, EnvError> {
        let text = self.csv["metadata"]["annotations"]["alm-examples"]
            .as_str()
            .ok_or_else(|| bad(CSV_FILE, "no alm-examples"))?;
        let examples: Vec<Value> = serde_json::from_str(text).map_err(|e| bad(CSV_FILE, e))?;
        examples
            .into_iter()
            .next()
            .ok_or_else(|| bad(CSV_FILE, "alm-examples is empty"))
    }

    /// Creates the ServiceAccounts and RBAC of the install strategy in `namespace` and returns
    /// the identity of the (one) ServiceAccount the Deployments run as.
    pub async fn install_permissions(
        &self,
        admin: &Client,
        namespace: &str,
    ) -> Result<ServiceAccountIdentity, EnvError> {
        let pp = PatchParams::apply("olm-e2e").force();
        // The bundle's ClusterRoles, which OLM creates with the CSV.
        for (role_name, _) in signet_operator::install::installed_cluster_roles()
            .map_err(|e| bad("installed ClusterRoles", e))?
        {
            let role: ClusterRole =
                read_yaml(&signet_operator::install::cluster_role_file(&role_name))?;
            Api::<ClusterRole>::all(admin.clone())
                .patch(&role_name, &pp, &Patch::Apply(&role))
                .await?;
        }
        let name = self.csv["metadata"]["name"]
            .as_str()
            .ok_or_else(|| bad(CSV_FILE, "no metadata.name"))?
            .to_owned();
        let mut accounts = Vec::new();
        for (kind, cluster) in [("clusterPermissions", true), ("permissions", false)] {
            for grant in self.strategy()[kind].as_array().into_iter().flatten() {
                let account = grant["serviceAccountName"]
                    .as_str()
                    .ok_or_else(|| bad(CSV_FILE, format!("{kind} without serviceAccountName")))?;
                let rules: Vec<PolicyRule> =
                    serde_json::from_value(grant["rules"].clone()).map_err(|e| bad(CSV_FILE, e))?;
                let role_name = format!("{name}-{account}");
                let subjects =
                    json!([{"kind": "ServiceAccount", "name": account, "namespace": namespace}]);
                if cluster {
                    let role = ClusterRole {
                        metadata: meta(&role_name, None),
                        rules: Some(rules),
                        ..ClusterRole::default()
                    };
                    Api::<ClusterRole>::all(admin.clone())
                        .patch(&role_name, &pp, &Patch::Apply(&role))
                        .await?;
                    let binding: ClusterRoleBinding = serde_json::from_value(json!({
                        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                        "metadata": {"name": role_name},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
                        "subjects": subjects,
                    }))
                    .map_err(|e| bad("ClusterRoleBinding", e))?;
                    Api::<ClusterRoleBinding>::all(admin.clone())
                        .patch(&role_name, &pp, &Patch::Apply(&binding))
                        .await?;
                } else {
                    let role = Role {
                        metadata: meta(&role_name, Some(namespace)),
                        rules: Some(rules),
                    };
                    Api::<Role>::namespaced(admin.clone(), namespace)
                        .patch(&role_name, &pp, &Patch::Apply(&role))
                        .await?;
                    let binding: RoleBinding = serde_json::from_value(json!({
                        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                        "metadata": {"name": role_name, "namespace": namespace},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name},
                        "subjects": subjects,
                    }))
                    .map_err(|e| bad("RoleBinding", e))?;
                    Api::<RoleBinding>::namespaced(admin.clone(), namespace)
                        .patch(&role_name, &pp, &Patch::Apply(&binding))
                        .await?;
                }
                accounts.push(account.to_owned());
            }
        }
        accounts.dedup();
        let [account] = accounts.as_slice() else {
            return Err(bad(
                CSV_FILE,
                format!("expected one ServiceAccount, found {accounts:?}"),
            ));
        };
        ServiceAccountIdentity::mint(admin, namespace, account, &[], 3600).await
    }

    /// The bundle with its images replaced, as a registry mirror would give them: every
    /// string in the CSV naming the operator image of this version (the Deployment's image,
    /// `containerImage`, `relatedImages`) becomes `operator`, every one naming the signer image
    /// (`SIGNET_SIGNER_IMAGE`, `relatedImages`) becomes `signer`. Returns how many it replaced.
    pub fn with_images(&mut self, operator: &str, signer: &str) -> usize {
        fn walk(v: &mut Value, from: &[(String, &str)], count: &mut usize) {
            match v {
                Value::String(s) => {
                    if let Some((_, to)) = from.iter().find(|(f, _)| f == s) {
                        *s = (*to).to_owned();
                        *count += 1;
                    }
                }
                Value::Array(items) => items.iter_mut().for_each(|i| walk(i, from, count)),
                Value::Object(map) => map.values_mut().for_each(|i| walk(i, from, count)),
                _ => {}
            }
        }
        let version = signet_operator::names::VERSION;
        let from = [
            (signet_operator::install::operator_image(version), operator),
            (signet_operator::install::signer_image(version), signer),
        ];
        let mut count = 0;
        walk(&mut self.csv, &from, &mut count);
        count
    }

    /// The install strategy's Deployments.
    pub fn deployments(&self) -> Result<Vec<(String, DeploymentSpec)>, EnvError> {
        self.strategy()["deployments"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                let name = d["name"].as_str().unwrap_or_default().to_owned();
                let spec = serde_json::from_value(d["spec"].clone()).map_err(|e| bad(&name, e))?;
                Ok((name, spec))
            })
            .collect()
    }

    /// Applies the install strategy's Deployments in `namespace`.
    pub async fn apply_deployments(&self, admin: &Client, namespace: &str) -> Result<(), EnvError> {
        let api = Api::<Deployment>::namespaced(admin.clone(), namespace);
        for (name, spec) in self.deployments()? {
            let deployment = Deployment {
                metadata: meta(&name, Some(namespace)),
                spec,
                status: None,
            };
            let mut body = serde_json::to_value(&deployment).map_err(|e| bad(&name, e))?;
            body["apiVersion"] = json!("apps/v1");
            body["kind"] = json!("Deployment");
            api.patch(
                &name,
                &PatchParams::apply("olm-e2e").force(),
                &Patch::Apply(&body),
            )
            .await?;
        }
        Ok(())
    }

    /// The environment of the first Deployment's first container as its pod in `namespace`
    /// sees it (`fieldRef: metadata.namespace` resolved).
    pub fn container_env(&self, namespace: &str) -> Result<BTreeMap<String, String>, EnvError> {
        let (name, spec) = self
            .deployments()?
            .into_iter()
            .next()
            .ok_or_else(|| bad(CSV_FILE, "no deployments"))?;
        let container = spec
            .template
            .spec
            .and_then(|s| s.containers.into_iter().next())
            .ok_or_else(|| bad(&name, "no container"))?;
        let mut vars = BTreeMap::new();
        for var in container.env.unwrap_or_default() {
            let field = var
                .value_from
                .as_ref()
                .and_then(|f| f.field_ref.as_ref())
                .map(|f| f.field_path.as_str());
            let value = match (var.value, field) {
                (Some(v), _) => v,
                (None, Some("metadata.namespace")) => namespace.to_owned(),
                (None, other) => {
                    return Err(bad(&name, format!("env {} from {other:?}", var.name)));
                }
            };
            vars.insert(var.name, value);
        }
        Ok(vars)
    }
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        ..ObjectMeta::default()
    }
}
