//! Secrets: create (with `stringData` merged into `data`), get, list (label selectors),
//! merge-patch and delete, as the API server does them; the kubelet reads them when it starts
//! a container (`secretKeyRef`, `envFrom`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Container, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use crate::Shared;
use crate::selector::labels_match;
use crate::server::{Params, is_dns_subdomain, status};

fn not_found(name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("secrets \"{name}\" not found"),
    )
}

fn namespace_missing(shared: &Shared, ns: &str) -> Option<Response> {
    let state = shared.lock();
    let known = state.namespaces.as_ref()?;
    (!known.contains(ns)).then(|| {
        status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("namespaces \"{ns}\" not found"),
        )
    })
}

pub async fn list_all(State(shared): State<Arc<Shared>>, params: Params) -> Response {
    list_in(&shared, None, &params.0)
}

pub async fn list(
    State(shared): State<Arc<Shared>>,
    Path(ns): Path<String>,
    params: Params,
) -> Response {
    list_in(&shared, Some(&ns), &params.0)
}

fn list_in(
    shared: &Shared,
    ns: Option<&str>,
    params: &std::collections::HashMap<String, String>,
) -> Response {
    let state = shared.lock();
    let items: Vec<&Secret> = state
        .secrets
        .iter()
        .filter(|((n, _), _)| ns.is_none_or(|ns| ns == n))
        .map(|(_, s)| s)
        .filter(|s| {
            params
                .get("labelSelector")
                .is_none_or(|sel| labels_match(sel, &s.metadata))
        })
        .collect();
    axum::Json(json!({
        "apiVersion": "v1", "kind": "SecretList",
        "metadata": {"resourceVersion": state.rv.to_string()},
        "items": items,
    }))
    .into_response()
}

pub async fn get(
    State(shared): State<Arc<Shared>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    match shared.lock().secrets.get(&(ns, name.clone())) {
        Some(secret) => axum::Json(secret).into_response(),
        None => not_found(&name),
    }
}

pub async fn create(
    State(shared): State<Arc<Shared>>,
    Path(ns): Path<String>,
    body: Bytes,
) -> Response {
    let mut secret: Secret = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("the body is not a Secret: {e}"),
            );
        }
    };
    if let Some(refused) = namespace_missing(&shared, &ns) {
        return refused;
    }
    let name = secret.metadata.name.clone().unwrap_or_default();
    if !is_dns_subdomain(&name) {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("Secret \"{name}\" is invalid: metadata.name: Invalid value: \"{name}\""),
        );
    }
    merge_string_data(&mut secret);
    let mut state = shared.lock();
    if state.secrets.contains_key(&(ns.clone(), name.clone())) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("secrets \"{name}\" already exists"),
        );
    }
    state.next_uid += 1;
    state.rv += 1;
    let meta = &mut secret.metadata;
    meta.uid = Some(format!("00000000-0000-0000-0001-{:012}", state.next_uid));
    meta.namespace = Some(ns.clone());
    meta.creation_timestamp = Some(Time(Timestamp::now()));
    meta.resource_version = Some(state.rv.to_string());
    secret.type_.get_or_insert_with(|| "Opaque".to_owned());
    state.secrets.insert((ns, name), secret.clone());
    (StatusCode::CREATED, axum::Json(secret)).into_response()
}

/// `stringData` is write-only: the API server merges it into `data` (its keys win).
fn merge_string_data(secret: &mut Secret) {
    if let Some(strings) = secret.string_data.take() {
        let data = secret.data.get_or_insert_with(BTreeMap::new);
        for (k, v) in strings {
            data.insert(k, ByteString(v.into_bytes()));
        }
    }
}

pub async fn delete(
    State(shared): State<Arc<Shared>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    match shared.lock().secrets.remove(&(ns, name.clone())) {
        Some(secret) => axum::Json(secret).into_response(),
        None => not_found(&name),
    }
}

/// A JSON merge patch (RFC 7386; `application/merge-patch+json`), the kind the client sends
/// for `Patch::Merge`.
pub async fn patch(
    State(shared): State<Arc<Shared>>,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let patch: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("the patch is not JSON: {e}"),
            );
        }
    };
    let mut state = shared.lock();
    let rv = state.rv + 1;
    let Some(stored) = state.secrets.get_mut(&(ns, name.clone())) else {
        return not_found(&name);
    };
    let mut value = serde_json::to_value(&*stored).expect("a Secret serializes");
    merge_patch(&mut value, &patch);
    let mut patched: Secret = match serde_json::from_value(value) {
        Ok(s) => s,
        Err(e) => {
            return status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!("Secret \"{name}\" is invalid after the patch: {e}"),
            );
        }
    };
    merge_string_data(&mut patched);
    patched.metadata.resource_version = Some(rv.to_string());
    *stored = patched.clone();
    state.rv = rv;
    axum::Json(patched).into_response()
}

fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(changes) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let fields = target.as_object_mut().expect("an object");
    for (key, change) in changes {
        if change.is_null() {
            fields.remove(key);
        } else {
            merge_patch(fields.entry(key.clone()).or_insert(Value::Null), change);
        }
    }
}

/// A container's environment as the kubelet gives it: `envFrom` Secrets first, then `env`
/// (plain values and `secretKeyRef`), a later entry winning. A Secret or key that is missing
/// (and not optional) is the kubelet's `CreateContainerConfigError`, with its message.
pub fn container_env(
    shared: &Shared,
    ns: &str,
    container: &Container,
) -> Result<Vec<(String, String)>, String> {
    let state = shared.lock();
    let secret = |name: &str| state.secrets.get(&(ns.to_owned(), name.to_owned()));
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |name: String, value: String| {
        env.retain(|(k, _)| *k != name);
        env.push((name, value));
    };
    for source in container.env_from.iter().flatten() {
        let Some(reference) = &source.secret_ref else {
            continue;
        };
        match secret(&reference.name) {
            Some(s) => {
                for (k, v) in s.data.iter().flatten() {
                    let name = format!("{}{k}", source.prefix.as_deref().unwrap_or_default());
                    set(name, String::from_utf8_lossy(&v.0).into_owned());
                }
            }
            None if reference.optional == Some(true) => {}
            None => return Err(format!("secret \"{}\" not found", reference.name)),
        }
    }
    for var in container.env.iter().flatten() {
        if let Some(value) = &var.value {
            set(var.name.clone(), value.clone());
            continue;
        }
        let Some(reference) = var
            .value_from
            .as_ref()
            .and_then(|f| f.secret_key_ref.as_ref())
        else {
            continue;
        };
        let optional = reference.optional == Some(true);
        let Some(s) = secret(&reference.name) else {
            if optional {
                continue;
            }
            return Err(format!("secret \"{}\" not found", reference.name));
        };
        match s.data.as_ref().and_then(|d| d.get(&reference.key)) {
            Some(v) => set(var.name.clone(), String::from_utf8_lossy(&v.0).into_owned()),
            None if optional => {}
            None => {
                return Err(format!(
                    "couldn't find key {} in Secret {ns}/{}",
                    reference.key, reference.name
                ));
            }
        }
    }
    Ok(env)
}

/// The garbage collector: a pod gone, the Secrets it owns (by `ownerReferences` uid) go too.
pub fn collect_owned_by(state: &mut crate::State, owner: &k8s_openapi::api::core::v1::Pod) {
    let Some(uid) = owner.metadata.uid.as_deref() else {
        return;
    };
    state.secrets.retain(|_, secret| {
        !secret
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.uid == uid)
    });
}
