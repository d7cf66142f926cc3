//! Rebuild when a migration is added: `sqlx::migrate!` only tracks the files it already saw.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
