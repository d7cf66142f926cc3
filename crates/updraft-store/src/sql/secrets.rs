//! Connections and variables, for [`crate::SecretStore`].
//!
//! A shared row (`tenant: None`) is stored with the tenant `*` (a key column cannot be NULL).
//! Values are kept as given: encryption is the caller's, recorded in the `is_*encrypted`
//! flags.

use super::codec::StoreRow;
use super::{Arg, Db, Query, is_unique_violation, query};
use crate::{
    ConnectionRow, EncryptedField, Reencrypt, Result, SecretQuery, StoreError, VariableRow,
    WriteMode,
};

/// How a row shared by every tenant is stored.
const SHARED: &str = "*";

const CONNECTION_COLUMNS: &str = "tenant, conn_id, conn_type, description, host, schema, login, \
                                  password, port, extra, is_encrypted, is_extra_encrypted";

const VARIABLE_COLUMNS: &str = "tenant, key, val, description, is_encrypted";

/// What a listing reads: the table, its id column and its columns.
struct Listed {
    table: &'static str,
    id: &'static str,
    columns: &'static str,
}

const CONNECTIONS: Listed = Listed {
    table: "connection",
    id: "conn_id",
    columns: CONNECTION_COLUMNS,
};

const VARIABLES: Listed = Listed {
    table: "variable",
    id: "key",
    columns: VARIABLE_COLUMNS,
};

fn stored_tenant(tenant: Option<&str>) -> &str {
    tenant.unwrap_or(SHARED)
}

/// A row's tenant as stored; the tenant `*` would be read back as shared, so none may be
/// named so.
fn tenant_to_write(tenant: Option<&str>) -> Result<&str> {
    match tenant {
        Some(SHARED) => Err(StoreError::Invalid(format!(
            "`{SHARED}` is not a tenant name (a row for every tenant has no tenant)"
        ))),
        tenant => Ok(stored_tenant(tenant)),
    }
}

fn tenant_of(stored: String) -> Option<String> {
    (stored != SHARED).then_some(stored)
}

/// How a row is named in messages: `connection my_db (tenant a)`, `variable k (shared)`.
fn named(kind: &str, id: &str, tenant: Option<&str>) -> String {
    match tenant {
        Some(tenant) => format!("{kind} {id} (tenant {tenant})"),
        None => format!("{kind} {id} (shared)"),
    }
}

// ---- connections ----------------------------------------------------------------------------

pub(crate) async fn connection<C: Db + ?Sized>(
    conn: &mut C,
    tenant: Option<&str>,
    conn_id: &str,
) -> Result<Option<ConnectionRow>> {
    let row = query(format!(
        "SELECT {CONNECTION_COLUMNS} FROM connection WHERE tenant = $1 AND conn_id = $2"
    ))
    .bind(stored_tenant(tenant))
    .bind(conn_id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(connection_row).transpose()
}

pub(crate) async fn connections<C: Db + ?Sized>(
    conn: &mut C,
    q: &SecretQuery,
) -> Result<(Vec<ConnectionRow>, u64)> {
    let (rows, total) = page(conn, &CONNECTIONS, q).await?;
    Ok((
        rows.iter().map(connection_row).collect::<Result<_>>()?,
        total,
    ))
}

pub(crate) async fn write_connection<C: Db + ?Sized>(
    conn: &mut C,
    row: &ConnectionRow,
    mode: WriteMode,
) -> Result<()> {
    let what = || named("connection", &row.conn_id, row.tenant.as_deref());
    let sql = match mode {
        WriteMode::Create => format!(
            "INSERT INTO connection ({CONNECTION_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ),
        WriteMode::Upsert => format!(
            "INSERT INTO connection ({CONNECTION_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (tenant, conn_id) DO UPDATE SET
                 conn_type = excluded.conn_type, description = excluded.description,
                 host = excluded.host, schema = excluded.schema, login = excluded.login,
                 password = excluded.password, port = excluded.port, extra = excluded.extra,
                 is_encrypted = excluded.is_encrypted,
                 is_extra_encrypted = excluded.is_extra_encrypted"
        ),
        WriteMode::Update => "UPDATE connection SET
                 conn_type = $3, description = $4, host = $5, schema = $6, login = $7,
                 password = $8, port = $9, extra = $10, is_encrypted = $11,
                 is_extra_encrypted = $12
             WHERE tenant = $1 AND conn_id = $2"
            .to_owned(),
    };
    let statement = query(sql)
        .bind(tenant_to_write(row.tenant.as_deref())?)
        .bind(&row.conn_id)
        .bind(&row.conn_type)
        .bind(row.description.clone())
        .bind(row.host.clone())
        .bind(row.schema.clone())
        .bind(row.login.clone())
        .bind(row.password.clone())
        .bind(row.port.map(i64::from))
        .bind(row.extra.clone())
        .bind(row.is_encrypted)
        .bind(row.is_extra_encrypted);
    written(statement.execute(conn).await, mode, what)
}

pub(crate) async fn delete_connection<C: Db + ?Sized>(
    conn: &mut C,
    tenant: Option<&str>,
    conn_id: &str,
) -> Result<bool> {
    let done = query("DELETE FROM connection WHERE tenant = $1 AND conn_id = $2")
        .bind(stored_tenant(tenant))
        .bind(conn_id)
        .execute(conn)
        .await?;
    Ok(done > 0)
}

fn connection_row(row: &impl StoreRow) -> Result<ConnectionRow> {
    let port = row
        .opt_int("port")?
        .map(|p| i32::try_from(p).map_err(|_| StoreError::Corrupt(format!("column `port`: {p}"))))
        .transpose()?;
    Ok(ConnectionRow {
        tenant: tenant_of(row.text("tenant")?),
        conn_id: row.text("conn_id")?,
        conn_type: row.text("conn_type")?,
        description: row.opt_text("description")?,
        host: row.opt_text("host")?,
        schema: row.opt_text("schema")?,
        login: row.opt_text("login")?,
        password: row.opt_text("password")?,
        port,
        extra: row.opt_text("extra")?,
        is_encrypted: row.flag("is_encrypted")?,
        is_extra_encrypted: row.flag("is_extra_encrypted")?,
    })
}

// ---- variables ------------------------------------------------------------------------------

pub(crate) async fn variable<C: Db + ?Sized>(
    conn: &mut C,
    tenant: Option<&str>,
    key: &str,
) -> Result<Option<VariableRow>> {
    let row = query(format!(
        "SELECT {VARIABLE_COLUMNS} FROM variable WHERE tenant = $1 AND key = $2"
    ))
    .bind(stored_tenant(tenant))
    .bind(key)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(variable_row).transpose()
}

pub(crate) async fn variables<C: Db + ?Sized>(
    conn: &mut C,
    q: &SecretQuery,
) -> Result<(Vec<VariableRow>, u64)> {
    let (rows, total) = page(conn, &VARIABLES, q).await?;
    Ok((rows.iter().map(variable_row).collect::<Result<_>>()?, total))
}

pub(crate) async fn write_variable<C: Db + ?Sized>(
    conn: &mut C,
    row: &VariableRow,
    mode: WriteMode,
) -> Result<()> {
    let what = || named("variable", &row.key, row.tenant.as_deref());
    let sql = match mode {
        WriteMode::Create => {
            format!("INSERT INTO variable ({VARIABLE_COLUMNS}) VALUES ($1, $2, $3, $4, $5)")
        }
        WriteMode::Upsert => format!(
            "INSERT INTO variable ({VARIABLE_COLUMNS}) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant, key) DO UPDATE SET
                 val = excluded.val, description = excluded.description,
                 is_encrypted = excluded.is_encrypted"
        ),
        WriteMode::Update => "UPDATE variable SET val = $3, description = $4, is_encrypted = $5
             WHERE tenant = $1 AND key = $2"
            .to_owned(),
    };
    let statement = query(sql)
        .bind(tenant_to_write(row.tenant.as_deref())?)
        .bind(&row.key)
        .bind(&row.value)
        .bind(row.description.clone())
        .bind(row.is_encrypted);
    written(statement.execute(conn).await, mode, what)
}

pub(crate) async fn delete_variable<C: Db + ?Sized>(
    conn: &mut C,
    tenant: Option<&str>,
    key: &str,
) -> Result<bool> {
    let done = query("DELETE FROM variable WHERE tenant = $1 AND key = $2")
        .bind(stored_tenant(tenant))
        .bind(key)
        .execute(conn)
        .await?;
    Ok(done > 0)
}

fn variable_row(row: &impl StoreRow) -> Result<VariableRow> {
    Ok(VariableRow {
        tenant: tenant_of(row.text("tenant")?),
        key: row.text("key")?,
        value: row.text("val")?,
        description: row.opt_text("description")?,
        is_encrypted: row.flag("is_encrypted")?,
    })
}

// ---- shared ---------------------------------------------------------------------------------

/// The outcome of a write in `mode`: a Create meeting a row is a [`StoreError::Conflict`], an
/// Update meeting none a [`StoreError::NotFound`].
fn written(done: sqlx::Result<u64>, mode: WriteMode, what: impl Fn() -> String) -> Result<()> {
    match done {
        Ok(0) if mode == WriteMode::Update => Err(StoreError::NotFound(what())),
        Ok(_) => Ok(()),
        Err(e) if mode == WriteMode::Create && is_unique_violation(&e) => {
            Err(StoreError::Conflict(format!("{} already exists", what())))
        }
        Err(e) => Err(e.into()),
    }
}

/// A page of `listed`'s rows, shared first, then by tenant and id, and how many match.
async fn page<C: Db + ?Sized>(
    conn: &mut C,
    listed: &Listed,
    q: &SecretQuery,
) -> Result<(Vec<C::Row>, u64)> {
    let mut counted = query(format!(
        "SELECT COUNT(*) AS n FROM {} WHERE 1 = 1",
        listed.table
    ));
    push_filters::<C>(&mut counted, listed, q);
    let total = counted.fetch_one(&mut *conn).await?.int("n")?;

    let mut rows = query(format!(
        "SELECT {} FROM {} WHERE 1 = 1",
        listed.columns, listed.table
    ));
    push_filters::<C>(&mut rows, listed, q);
    rows.push(&format!(
        " ORDER BY tenant <> '{SHARED}', tenant, {} LIMIT ",
        listed.id
    ))
    .push_bind(q.limit)
    .push(" OFFSET ")
    .push_bind(q.offset);
    let rows = rows.fetch_all(conn).await?;
    Ok((rows, u64::try_from(total).unwrap_or(0)))
}

fn push_filters<C: Db + ?Sized>(qb: &mut Query, listed: &Listed, q: &SecretQuery) {
    if let Some(tenants) = &q.tenants {
        let listed_tenants = C::DIALECT.in_texts("tenant", qb.next_param());
        qb.push(" AND (").push(&listed_tenants);
        qb.args.push(Arg::Texts(tenants.clone()));
        if q.include_shared {
            qb.push(" OR tenant = ").push_bind(SHARED);
        }
        qb.push(")");
    }
    if let Some(pattern) = &q.id_pattern {
        let like = C::DIALECT.ilike();
        qb.push(&format!(" AND {} {like} '%' || ", listed.id))
            .push_bind(escape_like(pattern))
            .push(" || '%' ESCAPE '\\'");
    }
    if let Some(id) = &q.id {
        qb.push(&format!(" AND {} = ", listed.id))
            .push_bind(id.clone());
    }
}

/// `text` with `LIKE`'s wildcards (and the escape character) made literal.
fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

// ---- re-encryption --------------------------------------------------------------------------

/// One encrypted field as read for re-encryption: where it is and its token.
struct Sealed {
    table: &'static str,
    column: &'static str,
    id_column: &'static str,
    tenant: String,
    id: String,
    token: String,
}

impl Sealed {
    /// `connection my_db's password (tenant a)`.
    fn what(&self) -> String {
        let kind = self.table;
        let field = match self.column {
            "val" => "value",
            other => other,
        };
        let owner = match self.tenant.as_str() {
            SHARED => "shared".to_owned(),
            tenant => format!("tenant {tenant}"),
        };
        format!("{kind} {}'s {field} ({owner})", self.id)
    }
}

/// Rewrites every encrypted field with `reencrypt`'s answer; the caller runs this in one
/// transaction, which an error from `reencrypt` leaves uncommitted. On PostgreSQL the rows are
/// locked as they are read, so no write slips in between.
pub(crate) async fn reencrypt<C: Db + ?Sized>(
    conn: &mut C,
    reencrypt: &Reencrypt<'_>,
) -> Result<u64> {
    let sealed = sealed_fields(conn).await?;
    let mut rewritten = 0;
    for field in &sealed {
        let token = reencrypt(EncryptedField {
            what: field.what(),
            token: &field.token,
        })
        .map_err(|message| StoreError::Invalid(format!("re-encryption aborted: {message}")))?;
        query(format!(
            "UPDATE {} SET {} = $1 WHERE tenant = $2 AND {} = $3",
            field.table, field.column, field.id_column
        ))
        .bind(token)
        .bind(&field.tenant)
        .bind(&field.id)
        .execute(&mut *conn)
        .await?;
        rewritten += 1;
    }
    Ok(rewritten)
}

/// Every encrypted field, in a stable order (table, tenant, id, column).
async fn sealed_fields<C: Db + ?Sized>(conn: &mut C) -> Result<Vec<Sealed>> {
    let lock = C::DIALECT.for_update();
    let mut sealed = Vec::new();
    let rows = query(format!(
        "SELECT tenant, conn_id, password, extra, is_encrypted, is_extra_encrypted
         FROM connection WHERE is_encrypted OR is_extra_encrypted
         ORDER BY tenant, conn_id{lock}"
    ))
    .fetch_all(&mut *conn)
    .await?;
    for row in &rows {
        for (column, flag) in [
            ("password", "is_encrypted"),
            ("extra", "is_extra_encrypted"),
        ] {
            if let (true, Some(token)) = (row.flag(flag)?, row.opt_text(column)?) {
                sealed.push(Sealed {
                    table: "connection",
                    column,
                    id_column: "conn_id",
                    tenant: row.text("tenant")?,
                    id: row.text("conn_id")?,
                    token,
                });
            }
        }
    }
    let rows = query(format!(
        "SELECT tenant, key, val FROM variable WHERE is_encrypted ORDER BY tenant, key{lock}"
    ))
    .fetch_all(&mut *conn)
    .await?;
    for row in &rows {
        sealed.push(Sealed {
            table: "variable",
            column: "val",
            id_column: "key",
            tenant: row.text("tenant")?,
            id: row.text("key")?,
            token: row.text("val")?,
        });
    }
    Ok(sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_are_made_literal() {
        assert_eq!(escape_like(r"a%b_c\d"), r"a\%b\_c\\d");
        assert_eq!(escape_like("plain"), "plain");
    }
}
