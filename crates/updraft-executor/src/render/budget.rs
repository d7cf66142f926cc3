//! The budget of one task's rendering: template instructions (minijinja's fuel), the size of
//! what the task's templates render together, the size of any string a filter builds, and a
//! time limit.
//!
//! Rendering output goes through a writer that refuses to pass the size limit or the
//! deadline, so a template printing gigabytes fails at the limit instead of allocating them.
//! The filters that can build a string far larger than their input (`join`, `replace`,
//! `indent`, and the string method `.replace()`) check the size of their result
//! before building it. minijinja's own limits cover the rest of the language: `range` refuses
//! more than 100,000 items and string repetition (`'x' * n`) more than 100 MB.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::ops::Deref;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use minijinja::value::{Rest, Value};
use minijinja::{Environment, Error, ErrorKind, State, Template};

/// Limits on rendering one try's templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderBudget {
    /// Template instructions one field's template may execute (minijinja's fuel).
    pub fuel: u64,
    /// Bytes the task's fields may render to, all together; also the largest string a filter
    /// may build.
    pub max_output_bytes: usize,
    /// Wall-clock time for rendering the whole task.
    pub time_limit: Duration,
}

impl RenderBudget {
    /// A million instructions (a loop of 100,000 items doing a few things each; tens of
    /// milliseconds), 1 MiB of output (Linux refuses a single argument or variable over
    /// 128 KiB anyway), two seconds.
    pub const DEFAULT: RenderBudget = RenderBudget {
        fuel: 1_000_000,
        max_output_bytes: 1024 * 1024,
        time_limit: Duration::from_secs(2),
    };
}

impl Default for RenderBudget {
    fn default() -> Self {
        RenderBudget::DEFAULT
    }
}

/// The budget spent so far while rendering one task.
pub(super) struct Tracker {
    budget: RenderBudget,
    deadline: Instant,
    written: Cell<usize>,
}

impl Tracker {
    pub(super) fn new(budget: &RenderBudget) -> Self {
        Tracker {
            budget: *budget,
            deadline: Instant::now() + budget.time_limit,
            written: Cell::new(0),
        }
    }

    pub(super) fn fuel(&self) -> u64 {
        self.budget.fuel
    }

    pub(super) fn check_time(&self) -> Result<(), String> {
        if Instant::now() >= self.deadline {
            return Err(Over::Time.message(&self.budget));
        }
        Ok(())
    }

    /// Counts `bytes` of output taken as they are (a field without template syntax).
    pub(super) fn count_output(&self, bytes: usize) -> Result<(), String> {
        let total = self.written.get().saturating_add(bytes);
        if total > self.budget.max_output_bytes {
            return Err(Over::Output.message(&self.budget));
        }
        self.written.set(total);
        Ok(())
    }

    /// Renders `template` with `ctx` within what is left of the budget; `describe` turns any
    /// other error into its message.
    pub(super) fn render(
        &self,
        template: &Template<'_, '_>,
        ctx: &Value,
        describe: impl Fn(&Error) -> String,
    ) -> Result<String, String> {
        let mut out = CappedOutput {
            buf: Vec::new(),
            room: self.budget.max_output_bytes - self.written.get(),
            deadline: self.deadline,
            over: None,
        };
        let _limits = FilterLimits::set(self.budget.max_output_bytes, self.deadline);
        let rendered = template.render_captured_to(ctx.clone(), &mut out).map(drop);
        match (rendered, out.over) {
            (Ok(()), _) => {
                self.written.set(self.written.get() + out.buf.len());
                String::from_utf8(out.buf).map_err(|e| format!("rendered invalid UTF-8: {e}"))
            }
            (Err(_), Some(over)) => Err(over.message(&self.budget)),
            (Err(e), None) if e.kind() == ErrorKind::OutOfFuel => {
                Err(Over::Fuel.message(&self.budget))
            }
            (Err(e), None) => Err(describe(&e)),
        }
    }
}

/// Which limit a template passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Over {
    Fuel,
    Output,
    Time,
}

impl Over {
    fn message(self, budget: &RenderBudget) -> String {
        let what = match self {
            Over::Fuel => format!(
                "it would execute more than {} template instructions (nested loops?)",
                budget.fuel
            ),
            Over::Output => format!(
                "the task's templates would render more than {} bytes",
                budget.max_output_bytes
            ),
            Over::Time => format!(
                "rendering took longer than {} ms",
                budget.time_limit.as_millis()
            ),
        };
        format!("template over budget: {what}")
    }
}

/// The rendered text, refused past the size left or the deadline.
struct CappedOutput {
    buf: Vec<u8>,
    room: usize,
    deadline: Instant,
    over: Option<Over>,
}

impl io::Write for CappedOutput {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if bytes.len() > self.room {
            self.over = Some(Over::Output);
        } else if Instant::now() >= self.deadline {
            self.over = Some(Over::Time);
        }
        if self.over.is_some() {
            return Err(io::Error::other("template over budget"));
        }
        self.room -= bytes.len();
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The engine for `fuel`: the shared one for the default budget, a new one otherwise.
pub(super) enum Engine {
    Shared(&'static Environment<'static>),
    Own(Box<Environment<'static>>),
}

impl Deref for Engine {
    type Target = Environment<'static>;

    fn deref(&self) -> &Self::Target {
        match self {
            Engine::Shared(env) => env,
            Engine::Own(env) => env,
        }
    }
}

pub(super) fn environment(fuel: u64) -> Engine {
    static SHARED: OnceLock<Environment<'static>> = OnceLock::new();
    if fuel == RenderBudget::DEFAULT.fuel {
        Engine::Shared(SHARED.get_or_init(|| super::new_environment(fuel)))
    } else {
        Engine::Own(Box::new(super::new_environment(fuel)))
    }
}

thread_local! {
    /// The largest string a filter may build and the deadline, while a template renders on
    /// this thread.
    static LIMITS: Cell<Option<(usize, Instant)>> = const { Cell::new(None) };
}

/// Sets the filters' limits for one render; restores the previous ones when dropped.
struct FilterLimits(Option<(usize, Instant)>);

impl FilterLimits {
    fn set(max_bytes: usize, deadline: Instant) -> Self {
        FilterLimits(LIMITS.replace(Some((max_bytes, deadline))))
    }
}

impl Drop for FilterLimits {
    fn drop(&mut self) {
        LIMITS.set(self.0);
    }
}

fn limits() -> (usize, Instant) {
    LIMITS.get().unwrap_or_else(|| {
        (
            RenderBudget::DEFAULT.max_output_bytes,
            Instant::now() + RenderBudget::DEFAULT.time_limit,
        )
    })
}

fn over_size(what: &str, max: usize) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("template over budget: `{what}` would build a string of more than {max} bytes"),
    )
}

fn over_time() -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        "template over budget: rendering passed its time limit",
    )
}

/// Fails when a string of `bytes` would pass the size limit.
pub(super) fn check_size(what: &str, bytes: usize) -> Result<(), Error> {
    let (max, _) = limits();
    if bytes > max {
        return Err(over_size(what, max));
    }
    Ok(())
}

/// Checks the result of replacing `old` with `new` in `s` (at most `limit` times) before it is
/// built.
pub(super) fn check_replace(
    s: &str,
    old: &str,
    new: &str,
    limit: Option<usize>,
) -> Result<(), Error> {
    if new.len() <= old.len() && !old.is_empty() {
        return Ok(());
    }
    let found = if old.is_empty() {
        s.chars().count() + 1
    } else {
        s.matches(old).count()
    };
    let count = limit.map_or(found, |l| found.min(l));
    let grown = count.saturating_mul(new.len() - old.len().min(new.len()));
    check_size("replace", s.len().saturating_add(grown))
}

/// The length of `value` printed, or `None` once it passes `max` (without printing the rest).
fn printed_len_within(value: &Value, max: usize) -> Option<usize> {
    if let Some(s) = value.as_str() {
        return (s.len() <= max).then_some(s.len());
    }
    struct Counter {
        n: usize,
        max: usize,
    }
    impl fmt::Write for Counter {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.n = self.n.saturating_add(s.len());
            if self.n > self.max {
                return Err(fmt::Error);
            }
            Ok(())
        }
    }
    let mut counter = Counter { n: 0, max };
    fmt::write(&mut counter, format_args!("{value}")).ok()?;
    Some(counter.n)
}

fn printed_len(what: &str, value: &Value) -> Result<usize, Error> {
    let (max, _) = limits();
    printed_len_within(value, max).ok_or_else(|| over_size(what, max))
}

/// `join`: the items' printed lengths and the separators, summed before joining.
fn check_join(value: &Value, args: &[Value]) -> Result<(), Error> {
    let (max, deadline) = limits();
    let separator = match args.first() {
        Some(s) if s.as_str().is_some() => s.as_str().map_or(0, str::len),
        _ => 0,
    };
    let mut total = 0usize;
    for (i, item) in value.try_iter()?.enumerate() {
        if i % 1024 == 0 && Instant::now() >= deadline {
            return Err(over_time());
        }
        let room = max.saturating_sub(total);
        let len = printed_len_within(&item, room).ok_or_else(|| over_size("join", max))?;
        total = total
            .saturating_add(len)
            .saturating_add(if i > 0 { separator } else { 0 });
        if total > max {
            return Err(over_size("join", max));
        }
    }
    Ok(())
}

/// `replace(old, new[, count])` on the printed value.
fn check_replace_filter(value: &Value, args: &[Value]) -> Result<(), Error> {
    let (Some(old), Some(new)) = (args.first(), args.get(1)) else {
        return Ok(()); // the filter itself reports the missing arguments
    };
    let (max, _) = limits();
    let text = match value.as_str() {
        Some(s) => s.to_owned(),
        None => {
            printed_len("replace", value)?;
            value.to_string()
        }
    };
    let count = args.get(2).and_then(|c| usize::try_from(c.as_i64()?).ok());
    let printed = |v: &Value| -> Result<String, Error> {
        printed_len_within(v, max)
            .map(|_| v.to_string())
            .ok_or_else(|| over_size("replace", max))
    };
    check_replace(&text, &printed(old)?, &printed(new)?, count)
}

/// `indent(width)`: the width times the lines, on top of the text.
fn check_indent(value: &Value, args: &[Value]) -> Result<(), Error> {
    let width = args
        .first()
        .and_then(Value::as_usize)
        .or_else(|| {
            args.last()
                .and_then(|k| k.get_attr("width").ok()?.as_usize())
        })
        .unwrap_or(0);
    let len = printed_len("indent", value)?;
    let lines = value.as_str().map_or(1, |s| s.lines().count().max(1));
    check_size("indent", len.saturating_add(width.saturating_mul(lines)))
}

/// Replaces the built-in filters that can build strings far larger than their input with ones
/// that check the size first.
pub(super) fn add_sized_filters(env: &mut Environment<'static>) {
    use minijinja::filters;
    add_checked(env, "join", Value::from_function(filters::join), check_join);
    let replace = Value::from_function(filters::replace);
    add_checked(env, "replace", replace, check_replace_filter);
    let indent = Value::from_function(filters::indent);
    add_checked(env, "indent", indent, check_indent);
}

fn add_checked(
    env: &mut Environment<'static>,
    name: &'static str,
    original: Value,
    check: fn(&Value, &[Value]) -> Result<(), Error>,
) {
    env.add_filter(
        name,
        move |state: &mut State, value: &Value, args: Rest<Value>| -> Result<Value, Error> {
            check(value, &args)?;
            let all: Vec<Value> = std::iter::once(value.clone()).chain(args.0).collect();
            original.call(state, &all)
        },
    );
}
