//! `updraft users ...` and `updraft roles list`: local users, the roles they hold per tenant,
//! and the `admin` user `standalone` creates on its first start.
//!
//! A role is held for the tenants named with `--tenant` (repeatable), or for every tenant
//! when none is named. Passwords are stored only as argon2 hashes. Every change is written to
//! the audit log as Airflow's CLI does (`cli_users_create`, ...).

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use updraft_auth::{Action, Grant, Identity, Resource, Role, decide, password};
use updraft_store::{NewEvent, NewUser, Store, StoreError, UserRow};

use crate::config::Settings;
use crate::output::{Format, print_rows};

/// How many characters a generated password has.
const GENERATED_PASSWORD_LEN: usize = 24;

/// The user `standalone` creates on a database without users.
const STANDALONE_ADMIN: &str = "admin";

/// Where `standalone` keeps the generated password of [`STANDALONE_ADMIN`], in `UPDRAFT_HOME`.
pub const STANDALONE_PASSWORD_FILE: &str = "standalone_admin_password.txt";

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Create a user holding a role, for the tenants named with --tenant or for every tenant.
    Create {
        #[arg(long, short = 'u')]
        username: String,
        /// Public, Viewer, User, Op or Admin (see `updraft roles list`).
        #[arg(long, short = 'r', value_parser = parse_role)]
        role: Role,
        #[arg(long, short = 'e')]
        email: String,
        #[arg(long, short = 'f')]
        firstname: String,
        #[arg(long, short = 'l')]
        lastname: String,
        #[command(flatten)]
        password: PasswordArgs,
        #[command(flatten)]
        tenants: TenantArgs,
    },
    /// List users with their roles (never their passwords).
    List,
    /// Delete a user and its roles.
    Delete {
        #[arg(long, short = 'u')]
        username: String,
    },
    /// Give a user a role, for the tenants named with --tenant or for every tenant.
    AddRole {
        #[arg(long, short = 'u')]
        username: String,
        #[arg(long, short = 'r', value_parser = parse_role)]
        role: Role,
        #[command(flatten)]
        tenants: TenantArgs,
    },
    /// Take a role away from a user, for the tenants named with --tenant or for every tenant.
    RemoveRole {
        #[arg(long, short = 'u')]
        username: String,
        #[arg(long, short = 'r', value_parser = parse_role)]
        role: Role,
        #[command(flatten)]
        tenants: TenantArgs,
    },
    /// Set a new password for a local user.
    ResetPassword {
        #[arg(long, short = 'u')]
        username: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
}

#[derive(Subcommand)]
pub enum RolesCommand {
    /// The roles and what each may do.
    List,
}

#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct PasswordArgs {
    /// The password; `-` reads it from the first line of standard input.
    #[arg(long, short = 'p')]
    password: Option<String>,
    /// Generate a random password and print it once.
    #[arg(long)]
    use_random_password: bool,
}

#[derive(Args)]
pub struct TenantArgs {
    /// A tenant the role is held for (repeatable); none, or `*`, means every tenant.
    #[arg(long = "tenant", short = 't', value_name = "TENANT", value_parser = parse_tenant)]
    tenants: Vec<String>,
}

impl TenantArgs {
    /// The grants of `role` for these tenants.
    fn grants(&self, role: Role) -> Vec<Grant> {
        if self.tenants.is_empty() || self.tenants.iter().any(|t| t == "*") {
            return vec![Grant::everywhere(role)];
        }
        let mut grants: Vec<Grant> = Vec::new();
        for tenant in &self.tenants {
            let grant = Grant::for_tenant(role, tenant);
            if !grants.contains(&grant) {
                grants.push(grant);
            }
        }
        grants
    }
}

fn parse_role(text: &str) -> Result<Role, String> {
    if text.contains('@') {
        return Err(format!(
            "`{text}`: give the role alone and each tenant with --tenant \
             (roles: {})",
            role_names()
        ));
    }
    text.parse()
        .map_err(|e: updraft_auth::GrantParseError| e.to_string())
}

fn parse_tenant(text: &str) -> Result<String, String> {
    let tenant = text.trim();
    if tenant.is_empty() {
        return Err("a tenant cannot be empty (leave --tenant out for every tenant)".into());
    }
    Ok(tenant.to_string())
}

fn role_names() -> String {
    Role::ALL.map(Role::name).join(", ")
}

pub async fn run(cmd: UsersCommand, settings: &Settings, format: Format) -> Result<ExitCode> {
    let store = super::open_store(settings).await?;
    let store = store.as_ref();
    match cmd {
        UsersCommand::Create {
            username,
            role,
            email,
            firstname,
            lastname,
            password,
            tenants,
        } => {
            let user = NewUser {
                username: non_empty("--username", username)?,
                email: non_empty("--email", email)?,
                first_name: firstname,
                last_name: lastname,
                password_hash: None,
                source: "local".into(),
            };
            create(store, user, &tenants.grants(role), &password).await?
        }
        UsersCommand::List => list(store, format).await?,
        UsersCommand::Delete { username } => delete(store, &username).await?,
        UsersCommand::AddRole {
            username,
            role,
            tenants,
        } => add_role(store, &username, &tenants.grants(role)).await?,
        UsersCommand::RemoveRole {
            username,
            role,
            tenants,
        } => remove_role(store, &username, &tenants.grants(role)).await?,
        UsersCommand::ResetPassword { username, password } => {
            reset_password(store, &username, &password).await?
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_roles(cmd: RolesCommand, format: Format) -> Result<ExitCode> {
    match cmd {
        RolesCommand::List => {
            let mut weaker: Vec<&str> = Vec::new();
            let mut rows: Vec<Value> = Vec::new();
            // Each role holds every permission of the weaker ones: the table shows what it adds.
            for role in Role::ALL {
                let all = permissions(role);
                let adds: Vec<&str> = all
                    .iter()
                    .filter(|p| !weaker.contains(p))
                    .copied()
                    .collect();
                rows.push(
                    json!({"role": role.name(), "adds": adds.join("; "), "permissions": all}),
                );
                weaker = all;
            }
            print_rows(format, &["role", "adds"], &rows);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What `role`, held for a tenant, allows there, as the one authorization decision answers
/// it (so this list cannot drift from the rules).
fn permissions(role: Role) -> Vec<&'static str> {
    const TENANT: &str = "some_tenant";
    let dag = Resource::Dag {
        tenant: TENANT,
        dag_id: "some_dag",
    };
    let pool = Resource::Pool {
        tenant: Some(TENANT),
    };
    let checks: [(&str, Action, Resource<'_>); 11] = [
        (
            "read DAGs, runs, task instances, logs and sources",
            Action::Read,
            dag,
        ),
        (
            "read import errors",
            Action::Read,
            Resource::ImportError { tenant: TENANT },
        ),
        ("read pools", Action::Read, pool),
        ("trigger runs", Action::Trigger, dag),
        ("pause, clear and mark runs and tasks", Action::Edit, dag),
        ("delete runs", Action::Delete, dag),
        ("create, edit and delete pools", Action::Edit, pool),
        (
            "connections and variables",
            Action::Edit,
            Resource::Connection { tenant: TENANT },
        ),
        (
            "read the configuration (with a role for every tenant)",
            Action::Read,
            Resource::Config,
        ),
        (
            "manage users and roles (with a role for every tenant)",
            Action::Create,
            Resource::Users,
        ),
        (
            "read the audit log",
            Action::Read,
            Resource::AuditLog {
                tenant: Some(TENANT),
            },
        ),
    ];
    let holder = Identity::new("role", vec![Grant::everywhere(role)]);
    checks
        .into_iter()
        .filter(|(_, action, resource)| decide(&holder, *action, *resource).allowed())
        .map(|(what, _, _)| what)
        .collect()
}

fn non_empty(flag: &str, value: String) -> Result<String> {
    let value = value.trim().to_string();
    if value.is_empty() {
        bail!("{flag} cannot be empty");
    }
    Ok(value)
}

async fn create(
    store: &dyn Store,
    mut user: NewUser,
    grants: &[Grant],
    password: &PasswordArgs,
) -> Result<()> {
    if store.user(&user.username).await?.is_some() {
        bail!("user `{}` already exists", user.username);
    }
    let (password, generated) = password.choose()?;
    user.password_hash = Some(hash(&password)?);
    match store.create_user(&user, grants).await {
        Err(StoreError::Conflict(_)) => bail!("user `{}` already exists", user.username),
        done => done?,
    }
    audit(
        store,
        "cli_users_create",
        json!({"username": user.username, "roles": grant_texts(grants)}),
    )
    .await?;
    println!(
        "User {} created with {}",
        user.username,
        grant_texts(grants).join(", ")
    );
    if generated {
        println!("Password: {password}");
    }
    Ok(())
}

async fn list(store: &dyn Store, format: Format) -> Result<()> {
    let rows: Vec<Value> = store.users().await?.iter().map(user_json).collect();
    print_rows(
        format,
        &[
            "username",
            "email",
            "first_name",
            "last_name",
            "roles",
            "source",
            "last_login",
        ],
        &rows,
    );
    Ok(())
}

/// A user as listed: everything but the password hash.
fn user_json(user: &UserRow) -> Value {
    json!({
        "username": user.username,
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "roles": grant_texts(&user.grants),
        "active": user.active,
        "source": user.source,
        "created_at": user.created_at.to_rfc3339(),
        "last_login": user.last_login.map(|t| t.to_rfc3339()),
    })
}

async fn delete(store: &dyn Store, username: &str) -> Result<()> {
    if !store.delete_user(username).await? {
        bail!("user `{username}` not found (see `updraft users list`)");
    }
    audit(store, "cli_users_delete", json!({"username": username})).await?;
    println!("User {username} deleted");
    Ok(())
}

async fn add_role(store: &dyn Store, username: &str, grants: &[Grant]) -> Result<()> {
    require_user(store, username).await?;
    for grant in grants {
        if store.add_grant(username, grant).await? {
            println!("User {username} now holds {grant}");
        } else {
            println!("User {username} already holds {grant}");
        }
    }
    audit(
        store,
        "cli_users_add_role",
        json!({"username": username, "roles": grant_texts(grants)}),
    )
    .await
}

/// Removes every grant, or none when the user does not hold one of them.
async fn remove_role(store: &dyn Store, username: &str, grants: &[Grant]) -> Result<()> {
    let user = require_user(store, username).await?;
    let missing: Vec<String> = grants
        .iter()
        .filter(|grant| !user.grants.contains(grant))
        .map(Grant::to_string)
        .collect();
    if !missing.is_empty() {
        let held = grant_texts(&user.grants);
        bail!(
            "user `{username}` does not hold {} (it holds: {}); nothing was removed",
            missing.join(", "),
            if held.is_empty() {
                "no role".to_string()
            } else {
                held.join(", ")
            }
        );
    }
    for grant in grants {
        store.remove_grant(username, grant).await?;
        println!("User {username} no longer holds {grant}");
    }
    audit(
        store,
        "cli_users_remove_role",
        json!({"username": username, "roles": grant_texts(grants)}),
    )
    .await
}

async fn reset_password(store: &dyn Store, username: &str, password: &PasswordArgs) -> Result<()> {
    require_user(store, username).await?;
    let (password, generated) = password.choose()?;
    store.set_password_hash(username, &hash(&password)?).await?;
    audit(
        store,
        "cli_users_reset_password",
        json!({"username": username}),
    )
    .await?;
    println!("Password of user {username} reset");
    if generated {
        println!("Password: {password}");
    }
    Ok(())
}

async fn require_user(store: &dyn Store, username: &str) -> Result<UserRow> {
    store
        .user(username)
        .await?
        .with_context(|| format!("user `{username}` not found (see `updraft users list`)"))
}

impl PasswordArgs {
    /// The password given, read from standard input, or generated (then `true`).
    fn choose(&self) -> Result<(String, bool)> {
        if self.use_random_password {
            return Ok((password::generate(GENERATED_PASSWORD_LEN), true));
        }
        let given = match self.password.as_deref() {
            Some("-") => read_password_line()?,
            Some(given) => given.to_string(),
            None => bail!("give --password or --use-random-password"),
        };
        if given.is_empty() {
            bail!("the password cannot be empty");
        }
        Ok((given, false))
    }
}

/// The first line of standard input, without its line ending.
fn read_password_line() -> Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password: ");
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

fn hash(password: &str) -> Result<String> {
    password::hash(password).context("hashing the password")
}

fn grant_texts(grants: &[Grant]) -> Vec<String> {
    grants.iter().map(Grant::to_string).collect()
}

/// Record a change made from the command line in the audit log, under the login name of
/// whoever ran it.
async fn audit(store: &dyn Store, event: &str, extra: Value) -> Result<()> {
    let who = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "cli".to_string());
    store
        .record_event(&NewEvent {
            username: who,
            event: event.to_string(),
            extra: Some(extra.to_string()),
            ..NewEvent::default()
        })
        .await
        .context("recording the change in the audit log")?;
    Ok(())
}

/// On a database without users, create `admin` with the Admin role for every tenant and a
/// generated password, keep the password in `$UPDRAFT_HOME/standalone_admin_password.txt`
/// (readable by its owner only) and print it once. With any user recorded, nothing happens.
pub async fn ensure_standalone_admin(settings: &Settings, store: &dyn Store) -> Result<()> {
    if !store.users().await?.is_empty() {
        return Ok(());
    }
    let password = password::generate(GENERATED_PASSWORD_LEN);
    let admin = NewUser {
        username: STANDALONE_ADMIN.into(),
        email: String::new(),
        first_name: "Admin".into(),
        last_name: String::new(),
        password_hash: Some(hash(&password)?),
        source: "local".into(),
    };
    match store
        .create_user(&admin, &[Grant::everywhere(Role::Admin)])
        .await
    {
        // Another process sharing the database created it first, and kept its password.
        Err(StoreError::Conflict(_)) => return Ok(()),
        done => done.context("creating the standalone admin user")?,
    }
    let file = settings.home.join(STANDALONE_PASSWORD_FILE);
    write_private(&file, &format!("{password}\n")).with_context(|| {
        format!(
            "the user `{STANDALONE_ADMIN}` was created, but its password could not be kept: \
             set a new one with `updraft users reset-password --username {STANDALONE_ADMIN} \
             --password -`"
        )
    })?;
    eprintln!(
        "Created the user `{STANDALONE_ADMIN}` (role Admin for every tenant). \
         Password: {password}\n(kept in {}; change it with `updraft users reset-password \
         --username {STANDALONE_ADMIN} --password -`)",
        file.display()
    );
    Ok(())
}

/// Write `text` to `path`, readable and writable by the owner only, replacing any file there.
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let partial: PathBuf = path.with_extension("txt.partial");
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)
        .with_context(|| format!("writing {}", partial.display()))?;
    // A file left over from an interrupted write keeps its mode when opened: set it.
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", partial.display()))?;
    out.write_all(text.as_bytes())
        .and_then(|()| out.sync_all())
        .with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))
}
