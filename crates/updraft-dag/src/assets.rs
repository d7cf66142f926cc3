//! Reading assets: an asset `schedule:` (a list of URIs, `{all: [...]}` / `{any: [...]}`
//! mappings, or an expression such as `"s3://a & (s3://b | s3://c)"`) and a task's `outlets:`.

use crate::diag::{self, Diagnostics, describe, quoted};
use crate::model::{AssetCondition, Outlet, Schedule};
use crate::yaml::{Node, Value};

/// The longest asset URI (Airflow's `asset.uri` column).
pub const MAX_ASSET_URI_LEN: usize = 1500;

/// Characters that separate URIs in an expression, so never part of one.
const OPERATORS: [char; 4] = ['&', '|', '(', ')'];

/// Whether a `schedule:` string names assets rather than a cron expression, preset or
/// duration: asset URIs have a scheme (`s3://...`).
pub(crate) fn is_asset_expression(text: &str) -> bool {
    text.contains("://")
}

/// Checks one asset URI; the error is a complete sentence.
pub fn check_asset_uri(uri: &str) -> Result<(), String> {
    if uri.trim().is_empty() {
        return Err("an asset URI cannot be empty".to_owned());
    }
    if let Some(bad) = uri
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || OPERATORS.contains(c))
    {
        return Err(format!(
            "asset URI {} contains {bad:?}, which a URI cannot hold",
            quoted(uri)
        ));
    }
    if uri.len() > MAX_ASSET_URI_LEN {
        return Err(format!(
            "asset URI {}... is longer than {MAX_ASSET_URI_LEN} bytes",
            quoted(&uri.chars().take(40).collect::<String>())
        ));
    }
    Ok(())
}

/// An asset expression that does not parse: the message and the 1-based character where the
/// problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpressionError {
    pub character: usize,
    pub message: String,
}

/// Parses an asset expression: URIs joined by `&` (all) and `|` (any), `&` binding tighter
/// than `|` as in Python, with parentheses.
pub fn parse_asset_expression(text: &str) -> Result<AssetCondition, ExpressionError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        tokens: &tokens,
        next: 0,
        end: text.chars().count() + 1,
    };
    let condition = parser.any()?;
    match parser.peek() {
        None => Ok(condition),
        Some((at, token)) => Err(ExpressionError {
            character: at,
            message: format!("unexpected {}", token.describe()),
        }),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Uri(String),
    And,
    Or,
    Open,
    Close,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Uri(uri) => format!("asset {}", quoted(uri)),
            Token::And => "`&`".to_owned(),
            Token::Or => "`|`".to_owned(),
            Token::Open => "`(`".to_owned(),
            Token::Close => "`)`".to_owned(),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, ExpressionError> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let at = i + 1;
        let token = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '&' => Token::And,
            '|' => Token::Or,
            '(' => Token::Open,
            ')' => Token::Close,
            _ => {
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() && !OPERATORS.contains(&chars[i])
                {
                    i += 1;
                }
                let uri: String = chars[start..i].iter().collect();
                check_asset_uri(&uri).map_err(|message| ExpressionError {
                    character: at,
                    message,
                })?;
                tokens.push((at, Token::Uri(uri)));
                continue;
            }
        };
        tokens.push((at, token));
        i += 1;
    }
    Ok(tokens)
}

struct Parser<'t> {
    tokens: &'t [(usize, Token)],
    next: usize,
    end: usize,
}

impl<'t> Parser<'t> {
    fn peek(&self) -> Option<(usize, &'t Token)> {
        let tokens: &'t [(usize, Token)] = self.tokens;
        tokens.get(self.next).map(|(at, t)| (*at, t))
    }

    fn any(&mut self) -> Result<AssetCondition, ExpressionError> {
        let mut items = vec![self.all()?];
        while let Some((_, Token::Or)) = self.peek() {
            self.next += 1;
            items.push(self.all()?);
        }
        Ok(joined(items, AssetCondition::Any))
    }

    fn all(&mut self) -> Result<AssetCondition, ExpressionError> {
        let mut items = vec![self.operand()?];
        while let Some((_, Token::And)) = self.peek() {
            self.next += 1;
            items.push(self.operand()?);
        }
        Ok(joined(items, AssetCondition::All))
    }

    fn operand(&mut self) -> Result<AssetCondition, ExpressionError> {
        let Some((at, token)) = self.peek() else {
            return Err(ExpressionError {
                character: self.end,
                message: "the expression ends where an asset URI or `(` was expected".to_owned(),
            });
        };
        self.next += 1;
        match token {
            Token::Uri(uri) => Ok(AssetCondition::Asset(uri.clone())),
            Token::Open => {
                let inner = self.any()?;
                match self.peek() {
                    Some((_, Token::Close)) => {
                        self.next += 1;
                        Ok(inner)
                    }
                    Some((at, other)) => Err(ExpressionError {
                        character: at,
                        message: format!("expected `)`, found {}", other.describe()),
                    }),
                    None => Err(ExpressionError {
                        character: self.end,
                        message: format!("the `(` at character {at} is never closed"),
                    }),
                }
            }
            other => Err(ExpressionError {
                character: at,
                message: format!("expected an asset URI or `(`, found {}", other.describe()),
            }),
        }
    }
}

/// One item stands alone; several are joined by `make`, same-kind groups flattened (`a & (b &
/// c)` is `a & b & c`, as Airflow's `AssetAll` flattens).
fn joined(
    items: Vec<AssetCondition>,
    make: fn(Vec<AssetCondition>) -> AssetCondition,
) -> AssetCondition {
    if items.len() == 1 {
        return items.into_iter().next().expect("one item");
    }
    let mut flat = Vec::with_capacity(items.len());
    let same = |c: &AssetCondition| {
        matches!(
            (c, &make(Vec::new())),
            (AssetCondition::All(_), AssetCondition::All(_))
                | (AssetCondition::Any(_), AssetCondition::Any(_))
        )
    };
    for item in items {
        if same(&item) {
            match item {
                AssetCondition::All(inner) | AssetCondition::Any(inner) => flat.extend(inner),
                AssetCondition::Asset(_) => unreachable!("an asset is no group"),
            }
        } else {
            flat.push(item);
        }
    }
    make(flat)
}

/// Reads an asset `schedule:`: an expression string, a list (all of its items), or a
/// one-key mapping `all:` / `any:` holding a list. List items are URIs, expressions or
/// such mappings.
pub(crate) fn asset_schedule(diags: &mut Diagnostics<'_>, node: &Node) -> Option<Schedule> {
    condition(diags, node).map(Schedule::Assets)
}

fn condition(diags: &mut Diagnostics<'_>, node: &Node) -> Option<AssetCondition> {
    match &node.value {
        Value::Str(text) => match parse_asset_expression(text) {
            Ok(condition) => Some(condition),
            Err(e) => {
                diags.at(
                    node.pos,
                    format!(
                        "invalid asset expression {}: at character {}: {}",
                        quoted(text),
                        e.character,
                        e.message
                    ),
                );
                None
            }
        },
        Value::Seq(items) => {
            list(diags, node, items).map(|items| joined(items, AssetCondition::All))
        }
        Value::Map(entries) => {
            let [(key, value)] = entries.as_slice() else {
                diags.at(
                    node.pos,
                    "an asset condition mapping has exactly one key, `all` or `any`",
                );
                return None;
            };
            let make: fn(Vec<AssetCondition>) -> AssetCondition = match key.as_str() {
                Some("all") => AssetCondition::All,
                Some("any") => AssetCondition::Any,
                _ => {
                    diags.at(
                        key.pos,
                        format!(
                            "unknown asset condition {}; use `all` or `any`",
                            describe(key)
                        ),
                    );
                    return None;
                }
            };
            let Value::Seq(items) = &value.value else {
                diag::wrong_type(diags, value, key.as_str().unwrap_or("all"), "a list");
                return None;
            };
            list(diags, value, items).map(|items| joined(items, make))
        }
        _ => {
            diags.at(
                node.pos,
                format!(
                    "an asset condition must be a URI, an expression, a list or an `all`/`any` \
                     mapping, found {}",
                    describe(node)
                ),
            );
            None
        }
    }
}

fn list(diags: &mut Diagnostics<'_>, node: &Node, items: &[Node]) -> Option<Vec<AssetCondition>> {
    if items.is_empty() {
        diags.at(node.pos, "an asset condition list cannot be empty");
        return None;
    }
    let before = diags.count();
    let read: Vec<Option<AssetCondition>> =
        items.iter().map(|item| condition(diags, item)).collect();
    if diags.count() > before {
        return None;
    }
    read.into_iter().collect()
}

/// Keys of an outlet written as a mapping.
const OUTLET_KEYS: [&str; 3] = ["uri", "name", "extra"];

/// Reads a task's `outlets:`: a list of URIs or `{uri, name, extra}` mappings, each URI once.
pub(crate) fn outlets(diags: &mut Diagnostics<'_>, node: &Node) -> Option<Vec<Outlet>> {
    let Value::Seq(items) = &node.value else {
        diag::wrong_type(diags, node, "outlets", "a list");
        return None;
    };
    let before = diags.count();
    let mut out: Vec<Outlet> = Vec::with_capacity(items.len());
    for item in items {
        let Some(outlet) = outlet(diags, item) else {
            continue;
        };
        if out.iter().any(|o| o.uri == outlet.uri) {
            diags.at(
                item.pos,
                format!("outlet {} is listed twice", quoted(&outlet.uri)),
            );
            continue;
        }
        out.push(outlet);
    }
    (diags.count() == before).then_some(out)
}

fn outlet(diags: &mut Diagnostics<'_>, node: &Node) -> Option<Outlet> {
    let checked = |diags: &mut Diagnostics<'_>, uri_node: &Node| {
        let uri = diag::string(diags, uri_node, "uri")?;
        match check_asset_uri(&uri) {
            Ok(()) => Some(uri),
            Err(message) => {
                diags.at(uri_node.pos, format!("invalid outlet: {message}"));
                None
            }
        }
    };
    match &node.value {
        Value::Str(_) => Some(Outlet {
            uri: checked(diags, node)?,
            name: None,
            extra: serde_json::Map::new(),
        }),
        Value::Map(_) => {
            let schema = diag::Schema {
                what: "an outlet",
                keys: &OUTLET_KEYS,
                hint: diag::no_hint,
            };
            let fields = diag::fields(diags, node, &schema)?;
            let Some(uri_node) = fields.get("uri") else {
                diags.at(node.pos, "an outlet mapping needs a `uri`");
                return None;
            };
            let uri = checked(diags, uri_node);
            let name = match fields.get("name") {
                Some(n) => Some(diag::non_empty_string(diags, n, "name")?),
                None => None,
            };
            let extra = match fields.get("extra") {
                Some(n) => match crate::params::to_json(diags, n, "extra")? {
                    serde_json::Value::Object(map) => map,
                    _ => {
                        diag::wrong_type(diags, n, "extra", "a mapping");
                        return None;
                    }
                },
                None => serde_json::Map::new(),
            };
            Some(Outlet {
                uri: uri?,
                name,
                extra,
            })
        }
        _ => {
            diag::wrong_type(
                diags,
                node,
                "outlets",
                "an asset URI or a mapping with `uri`",
            );
            None
        }
    }
}
