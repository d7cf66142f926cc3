//! Reading notifiers: the lists under `on_failure`, `on_success`, `on_retry` and `on_execute`
//! (tasks and `default_args`) and the DAG's `on_failure` / `on_success`.
//!
//! Each entry is a mapping with exactly one key naming its kind (`webhook`, `slack`, `email`)
//! whose value holds that kind's settings. Every problem is reported at its node.

use std::collections::BTreeMap;

use crate::diag::{self, Diagnostics, Schema, quoted};
use crate::model::{Notifier, SlackTarget};
use crate::task::check_conn_id;
use crate::yaml::{Node, Value};

/// The keys that select a notifier's kind.
pub(crate) const NOTIFIER_KINDS: [&str; 3] = ["webhook", "slack", "email"];
/// The connection an `email` notifier sends through unless it names another.
pub const DEFAULT_SMTP_CONNECTION: &str = "smtp_default";

const WEBHOOK_KEYS: [&str; 2] = ["url", "headers"];
const SLACK_KEYS: [&str; 3] = ["webhook_url", "connection", "text"];
const EMAIL_KEYS: [&str; 4] = ["to", "connection", "subject", "body"];

/// Reads a list of notifiers named `name` (`on_failure`, ...); `null` is an empty list.
pub(crate) fn notifiers(
    diags: &mut Diagnostics<'_>,
    node: &Node,
    name: &str,
) -> Option<Vec<Notifier>> {
    let items: &[Node] = match &node.value {
        Value::Seq(items) => items,
        Value::Null => &[],
        _ => {
            diag::wrong_type(
                diags,
                node,
                name,
                "a list of notifiers such as `- webhook: {url: ...}`",
            );
            return None;
        }
    };
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (index, item) in items.iter().enumerate() {
        match notifier(diags, item, &format!("{name}[{index}]")) {
            Some(n) => out.push(n),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn kind_hint(key: &str) -> Option<String> {
    match key {
        "url" | "headers" => Some(format!("{} belongs inside `webhook:`", quoted(key))),
        "http" | "post" => Some("use `webhook`".to_owned()),
        "smtp" | "mail" => Some("use `email`".to_owned()),
        _ => None,
    }
}

fn notifier(diags: &mut Diagnostics<'_>, node: &Node, label: &str) -> Option<Notifier> {
    let schema = Schema {
        what: label,
        keys: &NOTIFIER_KINDS,
        hint: kind_hint,
    };
    let before = diags.count();
    let fields = diag::fields(diags, node, &schema)?;
    let present: Vec<&str> = NOTIFIER_KINDS
        .into_iter()
        .filter(|k| fields.get(k).is_some())
        .collect();
    match present.as_slice() {
        // An unknown key was reported already.
        [] if diags.count() > before => None,
        [] => {
            diags.at(
                node.pos,
                format!("{label} names no notifier: set one of `webhook`, `slack`, `email`"),
            );
            None
        }
        [kind] => {
            let value = fields.get(kind)?;
            let label = format!("{label}.{kind}");
            match *kind {
                "webhook" => webhook(diags, value, &label),
                "slack" => slack(diags, value, &label),
                _ => email(diags, value, &label),
            }
        }
        [first, second, ..] => {
            let pos = fields.key_node(second).map_or(node.pos, |k| k.pos);
            diags.at(
                pos,
                format!(
                    "{label} sets both {} and {}; an entry is one notifier: start another entry with `-`",
                    quoted(first),
                    quoted(second)
                ),
            );
            None
        }
    }
}

fn webhook(diags: &mut Diagnostics<'_>, node: &Node, label: &str) -> Option<Notifier> {
    let schema = Schema {
        what: label,
        keys: &WEBHOOK_KEYS,
        hint: diag::no_hint,
    };
    let before = diags.count();
    let fields = diag::fields(diags, node, &schema)?;
    let url = required(diags, node, &fields, label, "url").and_then(|n| http_url(diags, n, label));
    let headers = match fields.get("headers") {
        Some(n) => headers(diags, n, label),
        None => Some(BTreeMap::new()),
    };
    let (url, headers) = (url?, headers?);
    (diags.count() == before).then_some(Notifier::Webhook { url, headers })
}

fn slack(diags: &mut Diagnostics<'_>, node: &Node, label: &str) -> Option<Notifier> {
    let schema = Schema {
        what: label,
        keys: &SLACK_KEYS,
        hint: diag::no_hint,
    };
    let before = diags.count();
    let fields = diag::fields(diags, node, &schema)?;
    let target = match (fields.get("webhook_url"), fields.get("connection")) {
        (Some(url), None) => http_url(diags, url, label).map(SlackTarget::Url),
        (None, Some(conn)) => connection(diags, conn, label).map(SlackTarget::Connection),
        (Some(_), Some(_)) => {
            let pos = fields.key_node("connection").map_or(node.pos, |k| k.pos);
            diags.at(
                pos,
                format!("{label} sets both `webhook_url` and `connection`; set one"),
            );
            None
        }
        (None, None) => {
            diags.at(
                node.pos,
                format!("{label} needs `webhook_url` or `connection` (a Slack webhook connection)"),
            );
            None
        }
    };
    let text = optional_text(diags, fields.get("text"), label, "text");
    let (target, text) = (target?, text?);
    (diags.count() == before).then_some(Notifier::Slack { target, text })
}

fn email(diags: &mut Diagnostics<'_>, node: &Node, label: &str) -> Option<Notifier> {
    let schema = Schema {
        what: label,
        keys: &EMAIL_KEYS,
        hint: diag::no_hint,
    };
    let before = diags.count();
    let fields = diag::fields(diags, node, &schema)?;
    let to = required(diags, node, &fields, label, "to").and_then(|n| recipients(diags, n, label));
    let connection = match fields.get("connection") {
        Some(n) => connection(diags, n, label),
        None => Some(DEFAULT_SMTP_CONNECTION.to_owned()),
    };
    let subject = optional_text(diags, fields.get("subject"), label, "subject");
    let body = optional_text(diags, fields.get("body"), label, "body");
    let (to, connection, subject, body) = (to?, connection?, subject?, body?);
    (diags.count() == before).then_some(Notifier::Email {
        to,
        connection,
        subject,
        body,
    })
}

fn required<'n>(
    diags: &mut Diagnostics<'_>,
    node: &Node,
    fields: &diag::Fields<'n>,
    label: &str,
    key: &str,
) -> Option<&'n Node> {
    let found = fields.get(key);
    if found.is_none() {
        diags.at(node.pos, format!("{label} has no {}", quoted(key)));
    }
    found
}

fn optional_text(
    diags: &mut Diagnostics<'_>,
    node: Option<&Node>,
    label: &str,
    key: &str,
) -> Option<Option<String>> {
    match node {
        None => Some(None),
        Some(n) => diag::non_empty_string(diags, n, &format!("{label}.{key}")).map(Some),
    }
}

/// A URL: `http(s)://...`, or a template (checked once rendered).
fn http_url(diags: &mut Diagnostics<'_>, node: &Node, label: &str) -> Option<String> {
    let url = diag::non_empty_string(diags, node, &format!("{label} URL"))?;
    let templated = url.contains("{{") || url.contains("{%");
    if !(templated || url.starts_with("https://") || url.starts_with("http://")) {
        diags.at(
            node.pos,
            format!("{label}: the URL must start with `https://` or `http://`, found {url:?}"),
        );
        return None;
    }
    Some(url)
}

fn connection(diags: &mut Diagnostics<'_>, node: &Node, label: &str) -> Option<String> {
    let id = diag::string(diags, node, &format!("{label}.connection"))?;
    match check_conn_id(&id) {
        Ok(()) => Some(id),
        Err(problem) => {
            diags.at(node.pos, format!("{label}.connection: {problem}"));
            None
        }
    }
}

/// Header names are HTTP tokens; values are text without line breaks.
fn headers(
    diags: &mut Diagnostics<'_>,
    node: &Node,
    label: &str,
) -> Option<BTreeMap<String, String>> {
    let name = format!("{label}.headers");
    let map = diag::env_map(diags, node, &name)?;
    let mut ok = true;
    for (key, value) in &map {
        let token = key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c));
        if !token || value.contains(['\r', '\n']) {
            diags.at(
                node.pos,
                format!(
                    "{name}: header {key:?} is invalid (names are letters, digits and `-`; values hold no line break)"
                ),
            );
            ok = false;
        }
    }
    ok.then_some(map)
}

fn recipients(diags: &mut Diagnostics<'_>, node: &Node, label: &str) -> Option<Vec<String>> {
    let name = format!("{label}.to");
    let items = diag::string_list(diags, node, &name, true)?;
    if items.is_empty() {
        diags.at(node.pos, format!("{} names no recipient", quoted(&name)));
        return None;
    }
    let mut ok = true;
    for (address, item) in &items {
        let templated = address.contains("{{");
        let plausible = address
            .split_once('@')
            .is_some_and(|(user, host)| !user.is_empty() && !host.is_empty());
        if !templated && (!plausible || address.contains(['\r', '\n', ',', ' '])) {
            diags.at(
                item.pos,
                format!("{name}: {address:?} is not an email address"),
            );
            ok = false;
        }
    }
    ok.then(|| items.into_iter().map(|(a, _)| a).collect())
}
