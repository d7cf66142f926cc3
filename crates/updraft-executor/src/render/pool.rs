//! Rendering off the caller's loop: on tokio's blocking pool, a bounded number of renders at a
//! time and one at a time per tenant, so a tenant whose templates spend their whole budget
//! holds one rendering thread and never the others' turns.
//!
//! The time limit is enforced on both sides: the renderer stops itself at its deadline (at
//! its next output, filter call or field; fuel bounds the instructions in between), and the
//! caller stops waiting at the same limit. A render past its limit keeps its thread and its
//! turn until it has stopped, so runaway renders never outnumber the pool.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::Semaphore;

use super::{RenderBudget, RenderError};

/// Renders one task (or anything else of its templates: a notifier's texts) with `render`
/// on the blocking pool within `budget`, waiting first for `tenant`'s turn and a free
/// rendering thread. Over the time limit the error says so; a render that panicked is an
/// error too.
pub async fn render_off_loop<F, T>(
    tenant: &str,
    task_id: &str,
    budget: RenderBudget,
    render: F,
) -> Result<T, RenderError>
where
    F: FnOnce(&RenderBudget) -> Result<T, RenderError> + Send + 'static,
    T: Send + 'static,
{
    let failed = |message: String| RenderError {
        task_id: task_id.to_owned(),
        field: "templates".to_owned(),
        message,
    };
    let closed = |_| failed("the rendering pool is closed".to_owned());
    let tenant_turn = tenant_semaphore(tenant)
        .acquire_owned()
        .await
        .map_err(closed)?;
    let thread = pool().clone().acquire_owned().await.map_err(closed)?;
    let job = tokio::task::spawn_blocking(move || {
        let _held = (tenant_turn, thread);
        render(&budget)
    });
    match tokio::time::timeout(budget.time_limit, job).await {
        Ok(Ok(rendered)) => rendered,
        Ok(Err(join)) => Err(failed(format!("rendering failed: {join}"))),
        Err(_) => Err(failed(format!(
            "template over budget: rendering took longer than {} ms",
            budget.time_limit.as_millis()
        ))),
    }
}

/// Renders at once: as many as there are cores, at least two.
fn pool() -> &'static Arc<Semaphore> {
    static POOL: OnceLock<Arc<Semaphore>> = OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Arc::new(Semaphore::new(cores.max(2)))
    })
}

/// One render at a time per tenant.
fn tenant_semaphore(tenant: &str) -> Arc<Semaphore> {
    static TENANTS: OnceLock<Mutex<HashMap<String, Arc<Semaphore>>>> = OnceLock::new();
    let mut tenants = TENANTS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    tenants
        .entry(tenant.to_owned())
        .or_insert_with(|| Arc::new(Semaphore::new(1)))
        .clone()
}
