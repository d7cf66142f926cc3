//! The Kubernetes Secret of a try: how a pod receives the variables holding secrets
//! (`RenderedTask::secret_env`, e.g. `AIRFLOW_CONN_<ID>`) without their values in its spec.
//!
//! The Secret is named like the try's pod, in the pod's namespace, labelled and annotated with
//! the try's identity (so it is found by label like the pod). The pod's container takes each
//! variable through `valueFrom.secretKeyRef` (key = the variable's name). It is created before
//! the pod, given the pod as owner once the pod exists (a cluster's garbage collector removes
//! it should updraft never get to), and deleted when the try ends, whatever the delete policy
//! does with the pod.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, Pod, Secret, SecretKeySelector};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use updraft_secrets::{Connection, Masker};

use crate::manifest::{self, TryIdentity};

/// The Secret holding `secret_env` for the try `id` whose pod is `pod`.
pub fn build(pod: &Pod, id: &TryIdentity, secret_env: &[(String, String)]) -> Secret {
    let data: BTreeMap<String, ByteString> = secret_env
        .iter()
        .map(|(k, v)| (k.clone(), ByteString(v.clone().into_bytes())))
        .collect();
    Secret {
        metadata: ObjectMeta {
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            labels: Some(manifest::identity_labels(id)),
            annotations: Some(manifest::identity_annotations(id)),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

/// Makes `container` of `pod` take each of `names` from the Secret `secret_name` (replacing a
/// plain value of the same name).
pub fn reference(pod: &mut Pod, container: &str, secret_name: &str, names: &[&str]) {
    let Some(c) = pod
        .spec
        .as_mut()
        .and_then(|s| s.containers.iter_mut().find(|c| c.name == container))
    else {
        return;
    };
    let env = c.env.get_or_insert_with(Vec::new);
    env.retain(|v| !names.contains(&v.name.as_str()));
    env.extend(names.iter().map(|name| EnvVar {
        name: (*name).to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret_name.to_owned(),
                key: (*name).to_owned(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
    }));
}

/// Whether a pod takes variables from the Secret named like itself (a try's Secret): so an
/// adopted pod's Secret is deleted at its end too.
pub fn is_referenced_by(pod: &Pod) -> bool {
    let Some(name) = pod.metadata.name.as_deref() else {
        return false;
    };
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.env.iter().flatten())
        .filter_map(|v| v.value_from.as_ref()?.secret_key_ref.as_ref())
        .any(|r| r.name == name)
}

/// Creates the Secret. One already there under this name is this try's (written before a
/// crash) when its annotations say so: its data is set again.
pub async fn create(api: &Api<Secret>, secret: &Secret) -> Result<(), String> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let namespace = secret.metadata.namespace.clone().unwrap_or_default();
    let failed =
        |e: kube::Error| format!("the Secret {namespace}/{name} could not be created: {e}");
    match api.create(&PostParams::default(), secret).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let existing = api.get_opt(&name).await.map_err(failed)?;
            let ours = existing.as_ref().and_then(identity_of) == identity_of(secret);
            if !ours {
                return Err(format!(
                    "a Secret named {name} already exists in {namespace} and does not belong to this try"
                ));
            }
            let patch = serde_json::json!({ "data": secret.data });
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(|_| ())
                .map_err(failed)
        }
        Err(e) => Err(failed(e)),
    }
}

/// Makes the pod (of uid `pod_uid`) the Secret's owner: deleting the pod deletes the Secret.
pub async fn set_owner(api: &Api<Secret>, name: &str, pod_uid: &str) {
    let patch = serde_json::json!({"metadata": {"ownerReferences": [{
        "apiVersion": "v1", "kind": "Pod", "name": name, "uid": pod_uid,
    }]}});
    if let Err(e) = api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::warn!(secret = %name, "could not make the pod the owner of its Secret: {e}");
    }
}

/// Deletes the Secret; one already gone is fine.
pub async fn delete(api: &Api<Secret>, name: &str) {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(e) => tracing::warn!(secret = %name, "could not delete the try's Secret: {e}"),
    }
}

/// Deletes every Secret of the try `id` in `namespaces`, found by label (and told apart from
/// another try's by its annotations).
pub async fn delete_by_identity(
    client: &kube::Client,
    namespaces: &[String],
    id: &TryIdentity,
) -> Result<usize, kube::Error> {
    let params = ListParams::default().labels(&manifest::identity_selector(id));
    let mut deleted = 0;
    for namespace in namespaces {
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        for secret in api.list(&params).await?.items {
            if identity_of(&secret).as_ref() == Some(id)
                && let Some(name) = &secret.metadata.name
            {
                delete(&api, name).await;
                deleted += 1;
            }
        }
    }
    Ok(deleted)
}

fn identity_of(secret: &Secret) -> Option<TryIdentity> {
    let pod = Pod {
        metadata: secret.metadata.clone(),
        ..Pod::default()
    };
    manifest::identity_of(&pod)
}

/// What to mask in the log of a pod followed again after a restart: every value in its
/// Secret, and the secret parts of the connections among them.
pub fn masker_of(secret: &Secret) -> Masker {
    let mut mask = Masker::new();
    for (key, value) in secret.data.iter().flatten() {
        let value = String::from_utf8_lossy(&value.0);
        mask.add(&value);
        if let Some(conn_id) = key
            .strip_prefix("AIRFLOW_CONN_")
            .or_else(|| key.strip_prefix("UPDRAFT_CONN_"))
            && let Ok(conn) = Connection::from_uri_or_json(&conn_id.to_lowercase(), &value)
        {
            for part in conn.secret_values() {
                mask.add(&part);
            }
        }
    }
    mask
}
