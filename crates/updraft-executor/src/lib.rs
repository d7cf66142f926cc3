//! Task execution: rendering a task's templates with Airflow's context ([`render`]) and running
//! task tries as child processes on this machine ([`local`], kept apart by [`isolation`]), the
//! XComs tries push ([`xcom`]), sensors' pokes run in this process ([`sensor`]), and ending what a scheduler that is gone left running of them
//! ([`leftovers`]).

pub mod isolation;
pub mod leftovers;
pub mod local;
pub mod render;
pub mod sensor;
pub mod venv;
pub mod xcom;

pub use isolation::{DEFAULT_ENV_ALLOWLIST, TryIsolation};
pub use local::{
    ExecOutcome, LaunchSpec, LocalExecutor, LocalExecutorConfig, Preparing, TryEvent, TryKey,
};
pub use render::{
    PYTHON_RUNNER, Program, PythonCall, RenderBudget, RenderError, RenderedTask, TemplateContext,
    has_templates, render_off_loop, render_task, render_task_within,
};
pub use sensor::{
    ExternalQuery, Poke, PokeCheck, PokeResult, RunTrigger, SensorProgram, SensorStates,
    StatesFuture, TriggerFuture, TriggerRefusal, TriggerRequest, Triggered,
};
pub use xcom::XComPush;
