//! Server-side apply of the desired objects, skipping those already as desired, and pruning
//! what the SignetConfig no longer asks for. The only module that writes managed objects.

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::build::Desired;
use crate::build::rbac::CredentialAccess;
use crate::names::{
    self, CREATED_BY_OPERATOR_LABEL, CREATED_FOR_ANNOTATION, FIELD_MANAGER, MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
};

/// A failed write, naming the object.
#[derive(Debug, thiserror::Error)]
#[error("failed to {action} {kind} {name}: {source}")]
pub struct ApplyError {
    pub action: &'static str,
    pub kind: String,
    pub name: String,
    #[source]
    pub source: kube::Error,
}

/// What an apply pass did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ApplyReport {
    /// Objects written (created or changed); empty when everything was already as desired.
    pub written: Vec<String>,
    /// Objects deleted because the spec no longer asks for them.
    pub pruned: Vec<String>,
    /// The Deployment as the API server returned or holds it.
    pub deployment: Option<Deployment>,
}

fn applied_hash<K: Serialize>(obj: &K) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(serde_json::to_vec(obj).unwrap_or_default());
    hex::encode(&digest[..16])
}

/// True when every field of `want` is present and equal in `have`: the server may add
/// defaults, but nothing we set may differ.
pub fn is_subset(want: &Value, have: &Value) -> bool {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => w
            .iter()
            .all(|(k, wv)| h.get(k).is_some_and(|hv| is_subset(wv, hv))),
        (Value::Array(w), Value::Array(h)) => {
            w.len() == h.len() && w.iter().zip(h).all(|(wv, hv)| is_subset(wv, hv))
        }
        _ => want == have,
    }
}

async fn ensure<K>(api: &Api<K>, obj: &K, report: &mut ApplyReport) -> Result<K, ApplyError>
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    ensure_with(api, obj, &K::DynamicType::default(), report).await
}

/// [`ensure`] for any kind, `DynamicObject`s included (`dt` names the kind).
pub async fn ensure_with<K>(
    api: &Api<K>,
    obj: &K,
    dt: &K::DynamicType,
    report: &mut ApplyReport,
) -> Result<K, ApplyError>
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let name = obj.name_any();
    let kind = K::kind(dt).to_string();
    let err = |action, source| ApplyError {
        action,
        kind: kind.clone(),
        name: name.clone(),
        source,
    };
    // The hash catches what a subset check cannot: a field we used to set and no longer do.
    let mut obj = obj.clone();
    let hash = applied_hash(&obj);
    obj.annotations_mut()
        .insert(names::APPLIED_HASH_ANNOTATION.to_owned(), hash);
    let current = api.get_opt(&name).await.map_err(|e| err("read", e))?;
    if let Some(current) = current {
        let want = serde_json::to_value(&obj).unwrap_or_default();
        let have = serde_json::to_value(&current).unwrap_or_default();
        if is_subset(&want, &have) {
            return Ok(current);
        }
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let applied = api
        .patch(&name, &params, &Patch::Apply(&obj))
        .await
        .map_err(|e| err("apply", e))?;
    report.written.push(format!("{kind}/{name}"));
    Ok(applied)
}

/// The signer's namespace (marked when the operator creates it) and the operator's own
/// Secret and Deployment rights in it, before it needs them; the namespace's name.
async fn ensure_namespace(
    client: &Client,
    desired: &Desired,
    report: &mut ApplyReport,
) -> Result<String, ApplyError> {
    let ns_name = desired.namespace.name_any();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut namespace = desired.namespace.clone();
    let existing = namespaces
        .get_opt(&ns_name)
        .await
        .map_err(|source| ApplyError {
            action: "read",
            kind: "Namespace".into(),
            name: ns_name.clone(),
            source,
        })?;
    let owner = owner_uid(desired);
    // Created now, or earlier for this SignetConfig: marked with its UID (the label alone,
    // which anyone allowed to label a namespace can set, marks nothing deletable).
    let created_by_us = existing.as_ref().is_none_or(|n| {
        n.annotations()
            .get(CREATED_FOR_ANNOTATION)
            .map(String::as_str)
            == Some(owner.as_str())
    });
    if created_by_us {
        namespace
            .labels_mut()
            .insert(CREATED_BY_OPERATOR_LABEL.to_owned(), "true".to_owned());
        namespace
            .annotations_mut()
            .insert(CREATED_FOR_ANNOTATION.to_owned(), owner.clone());
    }
    ensure(&namespaces, &namespace, report).await?;
    let written = report.written.len();
    ensure(
        &Api::namespaced(client.clone(), &ns_name),
        &desired.operator_binding,
        report,
    )
    .await?;
    if report.written.len() > written {
        await_granted(client, &ns_name).await;
    }
    Ok(ns_name)
}

/// Applies `desired`, creating the namespace (marked as ours) only if it is absent. What a
/// previous `targetNamespace` left behind is removed later by [`prune`], once the signing key
/// has been carried over.
pub async fn apply(client: &Client, desired: &Desired) -> Result<ApplyReport, ApplyError> {
    let mut report = ApplyReport::default();
    let ns_name = ensure_namespace(client, desired, &mut report).await?;
    ensure(
        &Api::namespaced(client.clone(), &ns_name),
        &desired.service_account,
        &mut report,
    )
    .await?;
    ensure(
        &Api::<ClusterRole>::all(client.clone()),
        &desired.cluster_role,
        &mut report,
    )
    .await?;
    ensure(
        &Api::<ClusterRoleBinding>::all(client.clone()),
        &desired.cluster_role_binding,
        &mut report,
    )
    .await?;
    ensure(
        &Api::namespaced(client.clone(), &ns_name),
        &desired.role,
        &mut report,
    )
    .await?;
    ensure(
        &Api::namespaced(client.clone(), &ns_name),
        &desired.role_binding,
        &mut report,
    )
    .await?;
    match &desired.credential_access {
        CredentialAccess::Everywhere(binding) => {
            ensure(&Api::all(client.clone()), binding.as_ref(), &mut report).await?;
        }
        CredentialAccess::In(bindings) => {
            for binding in bindings {
                let ns = binding.namespace().unwrap_or_default();
                ensure(&Api::namespaced(client.clone(), &ns), binding, &mut report).await?;
            }
        }
    }
    ensure(
        &Api::namespaced(client.clone(), &ns_name),
        &desired.config_map,
        &mut report,
    )
    .await?;
    ensure(
        &Api::namespaced(client.clone(), &ns_name),
        &desired.service,
        &mut report,
    )
    .await?;
    let deployment = ensure(
        &Api::namespaced(client.clone(), &ns_name),
        &desired.deployment,
        &mut report,
    )
    .await?;
    report.deployment = Some(deployment);
    Ok(report)
}

/// The SignetConfig's UID, from the owner reference every managed object carries.
fn owner_uid(desired: &Desired) -> String {
    desired
        .service_account
        .metadata
        .owner_references
        .iter()
        .flatten()
        .next()
        .map(|r| r.uid.clone())
        .unwrap_or_default()
}

/// Waits (at most 10 s) until the API server's authorizer grants what the operator's new
/// RoleBinding in `namespace` gives: RBAC caches may take a moment to see it. Not granted by
/// then, the next call fails with 403 and the reconcile is retried.
async fn await_granted(client: &Client, namespace: &str) {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
    };
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(namespace.to_owned()),
                verb: Some("get".to_owned()),
                resource: Some("secrets".to_owned()),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    for _ in 0..100 {
        let allowed = api
            .create(&PostParams::default(), &review)
            .await
            .is_ok_and(|r| r.status.is_some_and(|s| s.allowed));
        if allowed {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Creates `obj` unless an object of that name exists; never updates. Returns the object
/// that exists afterwards (ours or the one that was already there).
pub async fn create_if_absent<K>(api: &Api<K>, obj: &K) -> Result<(K, bool), ApplyError>
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let name = obj.name_any();
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let err = |action, source| ApplyError {
        action,
        kind: kind.clone(),
        name: name.clone(),
        source,
    };
    if let Some(existing) = api.get_opt(&name).await.map_err(|e| err("read", e))? {
        return Ok((existing, false));
    }
    match api
        .create(
            &PostParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PostParams::default()
            },
            obj,
        )
        .await
    {
        Ok(created) => Ok((created, true)),
        // Someone (a user, an external secret manager) created it first: theirs wins.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let existing = api.get(&name).await.map_err(|e| err("read", e))?;
            Ok((existing, false))
        }
        Err(e) => Err(err("create", e)),
    }
}

/// What a prune keeps: everything managed in the signer's namespace but the credential
/// access objects, and those credential access objects that are still desired.
struct Keep<'a> {
    namespace: &'a str,
    credential_namespaces: Vec<String>,
    /// The SignetConfig's UID: only objects it owns are ever pruned. The managed-by label
    /// alone is no proof — whoever may label an object could otherwise have the operator
    /// delete it for them.
    owner_uid: &'a str,
}

impl Keep<'_> {
    fn keeps(&self, kind: &str, namespace: &str, name: &str) -> bool {
        match name {
            // The operator's own rights go last, once nothing else there needs them.
            names::OPERATOR_BINDING => true,
            // Credentials are a binding to the installed ClusterRole: a Role of that name is
            // what an earlier version made.
            names::SIGNER_CREDENTIALS => {
                kind == "RoleBinding" && self.credential_namespaces.iter().any(|n| n == namespace)
            }
            _ => namespace == self.namespace,
        }
    }
}

async fn prune_kind<K>(
    client: &Client,
    keep: &Keep<'_>,
    report: &mut ApplyReport,
) -> Result<(), ApplyError>
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    prune_in::<K>(client, Api::all(client.clone()), keep, report).await
}

/// [`prune_kind`] among what `scope` lists (all namespaces, or one).
async fn prune_in<K>(
    client: &Client,
    scope: Api<K>,
    keep: &Keep<'_>,
    report: &mut ApplyReport,
) -> Result<(), ApplyError>
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let list = scope
        .list(&ListParams::default().labels(&names::managed_selector()))
        .await
        .map_err(|source| ApplyError {
            action: "list",
            kind: kind.clone(),
            name: names::managed_selector(),
            source,
        })?;
    for obj in list.items.iter().filter(|o| {
        !keep.keeps(&kind, &o.namespace().unwrap_or_default(), &o.name_any())
            && o.meta().deletion_timestamp.is_none()
            && o.meta()
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.uid == keep.owner_uid)
    }) {
        let ns = obj.namespace().unwrap_or_default();
        let api: Api<K> = Api::namespaced(client.clone(), &ns);
        api.delete(&obj.name_any(), &DeleteParams::background())
            .await
            .map_err(|source| ApplyError {
                action: "prune",
                kind: kind.clone(),
                name: format!("{ns}/{}", obj.name_any()),
                source,
            })?;
        report
            .pruned
            .push(format!("{kind}/{ns}/{}", obj.name_any()));
    }
    Ok(())
}

/// Deletes managed objects outside the signer's namespace (left behind by a
/// `targetNamespace` change) and credential access no longer wanted (`signer.namespaces`
/// changed), and namespaces the operator created there once they hold nothing of others'.
pub async fn prune(
    client: &Client,
    desired: &Desired,
    report: &mut ApplyReport,
) -> Result<(), ApplyError> {
    let keep_namespace = desired.namespace.name_any();
    let owner_uid = owner_uid(desired);
    let credential_namespaces = match &desired.credential_access {
        CredentialAccess::Everywhere(_) => Vec::new(),
        CredentialAccess::In(bindings) => bindings
            .iter()
            .map(|b| b.namespace().unwrap_or_default())
            .collect(),
    };
    let keep = Keep {
        owner_uid: &owner_uid,
        namespace: &keep_namespace,
        credential_namespaces,
    };
    // Namespaces where the operator granted itself Secret and Deployment rights before: the
    // only places it can, and the only places it looks for Secrets.
    let granted: Vec<RoleBinding> = Api::<RoleBinding>::all(client.clone())
        .list(&ListParams::default().labels(&names::managed_selector()))
        .await
        .map_err(|source| ApplyError {
            action: "list",
            kind: "RoleBinding".into(),
            name: names::managed_selector(),
            source,
        })?
        .items
        .into_iter()
        .filter(|b| b.name_any() == names::OPERATOR_BINDING && owned_by(b, &owner_uid))
        .filter(|b| b.namespace().is_some_and(|ns| ns != keep_namespace))
        .collect();
    prune_kind::<Deployment>(client, &keep, report).await?;
    for binding in &granted {
        let ns = binding.namespace().unwrap_or_default();
        prune_in::<Secret>(client, Api::namespaced(client.clone(), &ns), &keep, report).await?;
    }
    prune_kind::<Service>(client, &keep, report).await?;
    prune_kind::<ConfigMap>(client, &keep, report).await?;
    prune_kind::<RoleBinding>(client, &keep, report).await?;
    prune_kind::<Role>(client, &keep, report).await?;
    prune_kind::<ServiceAccount>(client, &keep, report).await?;
    if let CredentialAccess::In(_) = desired.credential_access {
        let bindings = Api::<ClusterRoleBinding>::all(client.clone());
        if let Some(b) = bindings
            .get_opt(names::SIGNER_CREDENTIALS)
            .await
            .map_err(|source| ApplyError {
                action: "read",
                kind: "ClusterRoleBinding".into(),
                name: names::SIGNER_CREDENTIALS.into(),
                source,
            })?
            .filter(|b| owned_by(b, &owner_uid))
        {
            delete_owned(&bindings, &b.name_any(), "ClusterRoleBinding", report).await?;
        }
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ours = namespaces
        .list(&ListParams::default().labels(&format!("{CREATED_BY_OPERATOR_LABEL}=true")))
        .await
        .map_err(|source| ApplyError {
            action: "list",
            kind: "Namespace".into(),
            name: CREATED_BY_OPERATOR_LABEL.into(),
            source,
        })?;
    // A namespace already being deleted is left to finish.
    for ns in ours
        .items
        .iter()
        .filter(|n| n.name_any() != keep_namespace && n.metadata.deletion_timestamp.is_none())
    {
        delete_namespace_if_unused(client, &ns.name_any(), &owner_uid, report).await?;
    }
    // Last, the operator's own rights where it no longer runs the signer.
    for binding in &granted {
        let ns = binding.namespace().unwrap_or_default();
        let api: Api<RoleBinding> = Api::namespaced(client.clone(), &ns);
        delete_owned(&api, names::OPERATOR_BINDING, "RoleBinding", report).await?;
    }
    Ok(())
}

fn owned_by<K: Resource>(obj: &K, owner_uid: &str) -> bool {
    obj.meta()
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == owner_uid)
}

/// Deletes `name` (absent already counts as done) and reports it.
async fn delete_owned<K>(
    api: &Api<K>,
    name: &str,
    kind: &str,
    report: &mut ApplyReport,
) -> Result<(), ApplyError>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => {
            report.pruned.push(format!("{kind}/{name}"));
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(ApplyError {
            action: "delete",
            kind: kind.into(),
            name: name.into(),
            source,
        }),
    }
}

/// The name of an object of kind `K` in `namespace` that Signet did not make, if any
/// (`ignore`: what Kubernetes puts in every namespace).
async fn foreign_object<K>(
    client: &Client,
    namespace: &str,
    ignore: &[&str],
) -> Result<Option<String>, ApplyError>
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let list = Api::<K>::namespaced(client.clone(), namespace)
        .list_metadata(&ListParams::default())
        .await
        .map_err(|source| ApplyError {
            action: "list",
            kind: kind.clone(),
            name: namespace.into(),
            source,
        })?;
    Ok(list
        .items
        .iter()
        .find(|o| {
            let labels = o.labels();
            let ours = labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE)
                || labels.contains_key(CREATED_BY_OPERATOR_LABEL);
            !ours && !ignore.contains(&o.name_any().as_str())
        })
        .map(|o| format!("{kind} {}", o.name_any())))
}

/// Deletes a namespace the operator created unless it holds something Signet did not make
/// (a user's Secret, ConfigMap, workload, account or RBAC): then it is kept, and the log says
/// what is in the way.
pub async fn delete_namespace_if_unused(
    client: &Client,
    name: &str,
    owner_uid: &str,
    report: &mut ApplyReport,
) -> Result<(), ApplyError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let marked = namespaces
        .get_opt(name)
        .await
        .map_err(|source| ApplyError {
            action: "read",
            kind: "Namespace".into(),
            name: name.into(),
            source,
        })?
        .is_some_and(|n| {
            n.annotations()
                .get(CREATED_FOR_ANNOTATION)
                .map(String::as_str)
                == Some(owner_uid)
        });
    if !marked {
        tracing::info!(
            namespace = name,
            "keeping namespace: it is not marked as created for this SignetConfig"
        );
        return Ok(());
    }
    let foreign = [
        foreign_object::<Secret>(client, name, &[]).await?,
        foreign_object::<ConfigMap>(
            client,
            name,
            &["kube-root-ca.crt", "openshift-service-ca.crt"],
        )
        .await?,
        foreign_object::<ServiceAccount>(client, name, &["default", "builder", "deployer"]).await?,
        foreign_object::<Deployment>(client, name, &[]).await?,
        foreign_object::<Service>(client, name, &[]).await?,
        foreign_object::<Role>(client, name, &[]).await?,
        foreign_object::<RoleBinding>(client, name, &[]).await?,
    ];
    if let Some(what) = foreign.into_iter().flatten().next() {
        tracing::info!(
            namespace = name,
            keeps = %what,
            "keeping namespace: it holds objects the operator did not create"
        );
        return Ok(());
    }
    match namespaces.delete(name, &DeleteParams::background()).await {
        Ok(_) => report.pruned.push(format!("Namespace/{name}")),
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(source) => {
            return Err(ApplyError {
                action: "delete",
                kind: "Namespace".into(),
                name: name.into(),
                source,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_subset;
    use serde_json::json;

    #[test]
    fn server_defaults_do_not_count_as_drift() {
        let want = json!({"spec": {"replicas": 1, "template": {"containers": [{"name": "a"}]}}});
        let have = json!({"spec": {"replicas": 1, "revisionHistoryLimit": 10,
                          "template": {"containers": [{"name": "a", "terminationMessagePath": "/dev/termination-log"}]}}});
        assert!(is_subset(&want, &have));
    }

    #[test]
    fn a_changed_or_removed_field_is_drift() {
        let want = json!({"data": {"k": "v"}, "list": [1, 2]});
        assert!(!is_subset(
            &want,
            &json!({"data": {"k": "w"}, "list": [1, 2]})
        ));
        assert!(!is_subset(&want, &json!({"data": {}, "list": [1, 2]})));
        assert!(!is_subset(&want, &json!({"data": {"k": "v"}, "list": [1]})));
    }
}
