//! Users, their grants and the audit log (`event_log`), for [`crate::UserStore`].
//!
//! A grant for every tenant is stored with the tenant `*` (a key column cannot be NULL), and
//! read back as [`Grant::everywhere`].

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use updraft_auth::{Grant, Role};

use super::codec::{self, StoreRow};
use super::{Arg, Db, Query, is_unique_violation, query};
use crate::{EventQuery, EventRow, NewEvent, NewUser, Result, StoreError, UserRow};

/// How a grant for every tenant is stored.
const EVERY_TENANT: &str = "*";

const USER_COLUMNS: &str =
    "username, email, first_name, last_name, password_hash, active, created_at, last_login, source";

const EVENT_COLUMNS: &str =
    "id, dttm, username, event, tenant, dag_id, run_id, task_id, map_index, try_number, extra";

// ---- users ----------------------------------------------------------------------------------

/// Insert a user; an existing username is a [`StoreError::Conflict`].
pub(crate) async fn insert<C: Db + ?Sized>(
    conn: &mut C,
    user: &NewUser,
    now: DateTime<Utc>,
) -> Result<()> {
    let done = query(
        "INSERT INTO users (username, email, first_name, last_name, password_hash, active,
                            created_at, source)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&user.username)
    .bind(&user.email)
    .bind(&user.first_name)
    .bind(&user.last_name)
    .bind(user.password_hash.clone())
    .bind(true)
    .bind(now)
    .bind(&user.source)
    .execute(conn)
    .await;
    match done {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
            "user {} already exists",
            user.username
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Insert a user signing in elsewhere, or update its names, email and source (its password
/// hash, if any, is kept).
pub(crate) async fn upsert_external<C: Db + ?Sized>(
    conn: &mut C,
    user: &NewUser,
    now: DateTime<Utc>,
) -> Result<()> {
    query(
        "INSERT INTO users (username, email, first_name, last_name, password_hash, active,
                            created_at, source)
         VALUES ($1, $2, $3, $4, NULL, $5, $6, $7)
         ON CONFLICT (username) DO UPDATE SET email = excluded.email,
                                              first_name = excluded.first_name,
                                              last_name = excluded.last_name,
                                              source = excluded.source",
    )
    .bind(&user.username)
    .bind(&user.email)
    .bind(&user.first_name)
    .bind(&user.last_name)
    .bind(true)
    .bind(now)
    .bind(&user.source)
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether the user exists; in a transaction on PostgreSQL, the row is locked so a
/// concurrent delete waits.
pub(crate) async fn exists<C: Db + ?Sized>(conn: &mut C, username: &str) -> Result<bool> {
    let sql = format!(
        "SELECT username FROM users WHERE username = $1{}",
        C::DIALECT.for_update()
    );
    Ok(query(sql)
        .bind(username)
        .fetch_optional(conn)
        .await?
        .is_some())
}

/// Unknown user: [`StoreError::NotFound`].
pub(crate) async fn require<C: Db + ?Sized>(conn: &mut C, username: &str) -> Result<()> {
    if exists(conn, username).await? {
        Ok(())
    } else {
        Err(not_found(username))
    }
}

fn not_found(username: &str) -> StoreError {
    StoreError::NotFound(format!("user {username}"))
}

pub(crate) async fn one<C: Db + ?Sized>(conn: &mut C, username: &str) -> Result<Option<UserRow>> {
    let row = query(format!(
        "SELECT {USER_COLUMNS} FROM users WHERE username = $1"
    ))
    .bind(username)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let mut user = user_row(&row)?;
    let grants = query("SELECT username, role, tenant FROM user_grant WHERE username = $1")
        .bind(username)
        .fetch_all(conn)
        .await?;
    user.grants = codec::all(&grants, grant_of)?;
    sort_grants(&mut user.grants);
    Ok(Some(user))
}

/// Every user with its grants, by username.
pub(crate) async fn all<C: Db + ?Sized>(conn: &mut C) -> Result<Vec<UserRow>> {
    let rows = query(format!(
        "SELECT {USER_COLUMNS} FROM users ORDER BY username"
    ))
    .fetch_all(&mut *conn)
    .await?;
    let mut users = codec::all(&rows, user_row)?;
    let rows = query("SELECT username, role, tenant FROM user_grant")
        .fetch_all(conn)
        .await?;
    let mut grants: HashMap<String, Vec<Grant>> = HashMap::new();
    for row in &rows {
        grants
            .entry(row.text("username")?)
            .or_default()
            .push(grant_of(row)?);
    }
    for user in &mut users {
        user.grants = grants.remove(&user.username).unwrap_or_default();
        sort_grants(&mut user.grants);
    }
    Ok(users)
}

/// False when there was no such user. Its grants go with it.
pub(crate) async fn delete<C: Db + ?Sized>(conn: &mut C, username: &str) -> Result<bool> {
    let done = query("DELETE FROM users WHERE username = $1")
        .bind(username)
        .execute(conn)
        .await?;
    Ok(done > 0)
}

/// Unknown user: [`StoreError::NotFound`].
pub(crate) async fn set_password_hash<C: Db + ?Sized>(
    conn: &mut C,
    username: &str,
    password_hash: &str,
) -> Result<()> {
    update_user(conn, "password_hash", password_hash, username).await
}

/// Unknown user: [`StoreError::NotFound`].
pub(crate) async fn record_login<C: Db + ?Sized>(
    conn: &mut C,
    username: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    update_user(conn, "last_login", at, username).await
}

/// Set one column of a user's row; unknown user: [`StoreError::NotFound`].
async fn update_user<C: Db + ?Sized>(
    conn: &mut C,
    column: &str,
    value: impl Into<Arg>,
    username: &str,
) -> Result<()> {
    let done = query(format!(
        "UPDATE users SET {column} = $1 WHERE username = $2"
    ))
    .bind(value)
    .bind(username)
    .execute(conn)
    .await?;
    if done == 0 {
        return Err(not_found(username));
    }
    Ok(())
}

fn user_row(row: &impl StoreRow) -> Result<UserRow> {
    Ok(UserRow {
        username: row.text("username")?,
        email: row.text("email")?,
        first_name: row.text("first_name")?,
        last_name: row.text("last_name")?,
        password_hash: row.opt_text("password_hash")?,
        active: row.flag("active")?,
        created_at: codec::time_col(row, "created_at")?,
        last_login: codec::opt_time_col(row, "last_login")?,
        source: row.text("source")?,
        grants: Vec::new(),
    })
}

// ---- grants ---------------------------------------------------------------------------------

/// False when the user held it already.
pub(crate) async fn add_grant<C: Db + ?Sized>(
    conn: &mut C,
    username: &str,
    grant: &Grant,
) -> Result<bool> {
    let done = query(
        "INSERT INTO user_grant (username, role, tenant) VALUES ($1, $2, $3)
         ON CONFLICT (username, role, tenant) DO NOTHING",
    )
    .bind(username)
    .bind(grant.role.name())
    .bind(stored_tenant(grant))
    .execute(conn)
    .await?;
    Ok(done > 0)
}

/// False when the user did not hold it.
pub(crate) async fn remove_grant<C: Db + ?Sized>(
    conn: &mut C,
    username: &str,
    grant: &Grant,
) -> Result<bool> {
    let done = query("DELETE FROM user_grant WHERE username = $1 AND role = $2 AND tenant = $3")
        .bind(username)
        .bind(grant.role.name())
        .bind(stored_tenant(grant))
        .execute(conn)
        .await?;
    Ok(done > 0)
}

pub(crate) async fn remove_all_grants<C: Db + ?Sized>(conn: &mut C, username: &str) -> Result<()> {
    query("DELETE FROM user_grant WHERE username = $1")
        .bind(username)
        .execute(conn)
        .await?;
    Ok(())
}

fn stored_tenant(grant: &Grant) -> &str {
    grant.tenant.as_deref().unwrap_or(EVERY_TENANT)
}

fn grant_of(row: &impl StoreRow) -> Result<Grant> {
    let role: Role = row
        .text("role")?
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("column `role`: {e}")))?;
    let tenant = row.text("tenant")?;
    Ok(if tenant == EVERY_TENANT {
        Grant::everywhere(role)
    } else {
        Grant::for_tenant(role, tenant)
    })
}

/// Every tenant first, then by tenant, then by role (weakest first).
fn sort_grants(grants: &mut [Grant]) {
    grants.sort_by(|a, b| (&a.tenant, a.role).cmp(&(&b.tenant, b.role)));
}

// ---- audit log ------------------------------------------------------------------------------

pub(crate) async fn record_event<C: Db + ?Sized>(
    conn: &mut C,
    event: &NewEvent,
    now: DateTime<Utc>,
) -> Result<i64> {
    let row = query(
        "INSERT INTO event_log (dttm, username, event, tenant, dag_id, run_id, task_id,
                                map_index, try_number, extra)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         RETURNING id",
    )
    .bind(event.when.unwrap_or(now))
    .bind(&event.username)
    .bind(&event.event)
    .bind(event.tenant.clone())
    .bind(event.dag_id.clone())
    .bind(event.run_id.clone())
    .bind(event.task_id.clone())
    .bind(event.map_index)
    .bind(event.try_number)
    .bind(event.extra.clone())
    .fetch_one(conn)
    .await?;
    row.int("id")
}

/// A page of the log, newest first, and how many entries match.
pub(crate) async fn events<C: Db + ?Sized>(
    conn: &mut C,
    q: &EventQuery,
) -> Result<(Vec<EventRow>, u64)> {
    let mut counted = query("SELECT COUNT(*) AS n FROM event_log WHERE 1 = 1");
    push_event_filters::<C>(&mut counted, q);
    let total = counted.fetch_one(&mut *conn).await?.int("n")?;

    let mut page = query(format!("SELECT {EVENT_COLUMNS} FROM event_log WHERE 1 = 1"));
    push_event_filters::<C>(&mut page, q);
    page.push(" ORDER BY dttm DESC, id DESC LIMIT ")
        .push_bind(q.limit)
        .push(" OFFSET ")
        .push_bind(q.offset);
    let rows = page.fetch_all(conn).await?;
    Ok((
        codec::all(&rows, event_row)?,
        u64::try_from(total).unwrap_or(0),
    ))
}

fn push_event_filters<C: Db + ?Sized>(qb: &mut Query, q: &EventQuery) {
    if let Some(tenants) = &q.tenants {
        let listed = C::DIALECT.in_texts("tenant", qb.next_param());
        qb.push(" AND (").push(&listed);
        qb.args.push(Arg::Texts(tenants.clone()));
        if q.include_untenanted {
            qb.push(" OR tenant IS NULL");
        }
        qb.push(")");
    }
    if let Some(id) = q.id {
        qb.push(" AND id = ").push_bind(id);
    }
    for (column, value) in [
        ("dag_id", &q.dag_id),
        ("run_id", &q.run_id),
        ("task_id", &q.task_id),
        ("event", &q.event),
        ("username", &q.username),
    ] {
        if let Some(value) = value {
            qb.push(&format!(" AND {column} = ")).push_bind(value);
        }
    }
    if let Some(after) = q.after {
        qb.push(" AND dttm >= ").push_bind(after);
    }
    if let Some(before) = q.before {
        qb.push(" AND dttm < ").push_bind(before);
    }
}

fn event_row(row: &impl StoreRow) -> Result<EventRow> {
    Ok(EventRow {
        id: row.int("id")?,
        when: codec::time_col(row, "dttm")?,
        username: row.text("username")?,
        event: row.text("event")?,
        tenant: row.opt_text("tenant")?,
        dag_id: row.opt_text("dag_id")?,
        run_id: row.opt_text("run_id")?,
        task_id: row.opt_text("task_id")?,
        map_index: row.opt_int("map_index")?,
        try_number: row.opt_int("try_number")?,
        extra: row.opt_text("extra")?,
    })
}
