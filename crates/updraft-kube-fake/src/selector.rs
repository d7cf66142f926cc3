//! Label and field selectors, as the API server reads them.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// `a=b`, `a==b`, `a!=b`, `a` (has the label), `!a` (has not), comma-separated, all must hold.
pub fn labels_match(selector: &str, meta: &ObjectMeta) -> bool {
    let labels = meta.labels.clone().unwrap_or_default();
    clauses(selector).all(|clause| {
        if let Some((k, v)) = clause.split_once("!=") {
            labels.get(k.trim()).map(String::as_str) != Some(v.trim())
        } else if let Some((k, v)) = clause.split_once("==").or_else(|| clause.split_once('=')) {
            labels.get(k.trim()).map(String::as_str) == Some(v.trim())
        } else if let Some(k) = clause.strip_prefix('!') {
            !labels.contains_key(k.trim())
        } else {
            labels.contains_key(clause.trim())
        }
    })
}

/// `metadata.name`, `metadata.namespace` and `status.phase`, with `=`, `==` or `!=`.
pub fn fields_match(selector: &str, pod: &Pod) -> bool {
    clauses(selector).all(|clause| {
        let (key, value, equal) = match clause.split_once("!=") {
            Some((k, v)) => (k, v, false),
            None => match clause.split_once("==").or_else(|| clause.split_once('=')) {
                Some((k, v)) => (k, v, true),
                None => return false,
            },
        };
        let actual = match key.trim() {
            "metadata.name" => pod.metadata.name.clone(),
            "metadata.namespace" => pod.metadata.namespace.clone(),
            "status.phase" => pod.status.as_ref().and_then(|s| s.phase.clone()),
            _ => None,
        };
        (actual.as_deref() == Some(value.trim())) == equal
    })
}

fn clauses(selector: &str) -> impl Iterator<Item = &str> {
    selector.split(',').filter(|c| !c.trim().is_empty())
}
