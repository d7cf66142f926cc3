//! The process's Prometheus metrics.
//!
//! One [`Metrics`] per process ([`global`]): the scheduler, the DAG sources and the server
//! record into it, and `/metrics` encodes it in the OpenMetrics text format. Metrics Airflow
//! has keep Airflow's names, as its StatsD exporter shows them to Prometheus (`airflow_`, the
//! dots as underscores), so dashboards and alerts written for Airflow find them; counters
//! carry OpenMetrics' `_total` suffix and durations are in seconds. updraft's own metrics
//! are named `updraft_…`.

use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// What `/metrics` answers with.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    pub dag_id: String,
    pub task_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskStateLabels {
    pub dag_id: String,
    pub task_id: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub pool_name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncLabels {
    pub source: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// A pool's slots as Airflow counts them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolSlots {
    pub name: String,
    pub open: i64,
    pub running: i64,
    pub queued: i64,
}

/// Every metric of the process, registered once.
pub struct Metrics {
    registry: Registry,
    pub scheduler_heartbeat: Counter,
    pub scheduler_loop_duration: Histogram,
    pub dagbag_size: Gauge,
    pub import_errors: Gauge,
    pub total_parse_time: FloatGauge,
    pub ti_successes: Counter,
    pub ti_failures: Counter,
    ti_finish: Family<TaskStateLabels, Counter>,
    task_duration: HistogramFamily<TaskLabels>,
    pool_open_slots: Family<PoolLabels, Gauge>,
    pool_running_slots: Family<PoolLabels, Gauge>,
    pool_queued_slots: Family<PoolLabels, Gauge>,
    pub executor_running_tasks: Gauge,
    pub executor_queued_tasks: Gauge,
    pub executor_open_slots: Gauge,
    pub store_step_duration: Histogram,
    source_syncs: Family<SyncLabels, Counter>,
    source_failures: Family<SourceLabels, Gauge>,
    source_last_success: Family<SourceLabels, FloatGauge>,
}

/// The process's metrics, made on first use.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// 1 ms to about 9 hours: tasks and loop passes alike.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 4.0, 13))
}

/// 100 µs to about 1.6 s: one store transaction.
fn store_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry of its own (tests make several; the process uses [`global`]).
    pub fn new() -> Self {
        let metrics = Metrics {
            registry: Registry::default(),
            scheduler_heartbeat: Counter::default(),
            scheduler_loop_duration: duration_histogram(),
            dagbag_size: Gauge::default(),
            import_errors: Gauge::default(),
            total_parse_time: FloatGauge::default(),
            ti_successes: Counter::default(),
            ti_failures: Counter::default(),
            ti_finish: Family::default(),
            task_duration: Family::new_with_constructor(duration_histogram),
            pool_open_slots: Family::default(),
            pool_running_slots: Family::default(),
            pool_queued_slots: Family::default(),
            executor_running_tasks: Gauge::default(),
            executor_queued_tasks: Gauge::default(),
            executor_open_slots: Gauge::default(),
            store_step_duration: store_histogram(),
            source_syncs: Family::default(),
            source_failures: Family::default(),
            source_last_success: Family::default(),
        };
        metrics.registered()
    }

    fn registered(mut self) -> Self {
        let r = &mut self.registry;
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        r.register("updraft_build_info", "updraft's version", build);
        r.register(
            "airflow_scheduler_heartbeat",
            "Scheduler heartbeats recorded",
            self.scheduler_heartbeat.clone(),
        );
        r.register(
            "airflow_scheduler_scheduler_loop_duration",
            "Seconds one stimulus of the scheduler loop took to handle",
            self.scheduler_loop_duration.clone(),
        );
        r.register(
            "airflow_dagbag_size",
            "DAGs loaded by the last refresh of the DAGs folder",
            self.dagbag_size.clone(),
        );
        r.register(
            "airflow_dag_processing_import_errors",
            "Files that failed to load in the last refresh of the DAGs folder",
            self.import_errors.clone(),
        );
        r.register(
            "airflow_dag_processing_total_parse_time",
            "Seconds the last refresh of the DAGs folder took",
            self.total_parse_time.clone(),
        );
        r.register(
            "airflow_ti_successes",
            "Task instances that succeeded",
            self.ti_successes.clone(),
        );
        r.register(
            "airflow_ti_failures",
            "Task instances that failed (retries spent)",
            self.ti_failures.clone(),
        );
        r.register(
            "airflow_ti_finish",
            "Tries that ended, by DAG, task and the state they left",
            self.ti_finish.clone(),
        );
        r.register(
            "airflow_task_duration",
            "Seconds a try ran, from its launch to its end",
            self.task_duration.clone(),
        );
        r.register(
            "airflow_pool_open_slots",
            "Open slots of a pool",
            self.pool_open_slots.clone(),
        );
        r.register(
            "airflow_pool_running_slots",
            "Slots of a pool held by running task instances",
            self.pool_running_slots.clone(),
        );
        r.register(
            "airflow_pool_queued_slots",
            "Slots of a pool held by queued task instances",
            self.pool_queued_slots.clone(),
        );
        r.register(
            "airflow_executor_running_tasks",
            "Tries this scheduler's executors are running",
            self.executor_running_tasks.clone(),
        );
        r.register(
            "airflow_executor_queued_tasks",
            "Task instances queued by this scheduler and not yet handed to an executor",
            self.executor_queued_tasks.clone(),
        );
        r.register(
            "airflow_executor_open_slots",
            "Tries this scheduler may still start (its parallelism less those running)",
            self.executor_open_slots.clone(),
        );
        r.register(
            "updraft_store_step_duration_seconds",
            "Seconds of the scheduler's record-evaluate-queue transaction",
            self.store_step_duration.clone(),
        );
        r.register(
            "updraft_source_syncs",
            "Syncs of a DAG source, by result (ok, failed)",
            self.source_syncs.clone(),
        );
        r.register(
            "updraft_source_failures",
            "Failed syncs of a DAG source since its last success",
            self.source_failures.clone(),
        );
        r.register(
            "updraft_source_last_success_timestamp_seconds",
            "When a DAG source last synced successfully (Unix time)",
            self.source_last_success.clone(),
        );
        self
    }

    /// A try ended in `state` after running `ran` (none for a sensor's poke, which is not a
    /// run of the task).
    pub fn try_finished(&self, dag_id: &str, task_id: &str, state: &str, ran: Option<Duration>) {
        match state {
            "success" => self.ti_successes.inc(),
            "failed" => self.ti_failures.inc(),
            _ => 0,
        };
        self.ti_finish
            .get_or_create(&TaskStateLabels {
                dag_id: dag_id.to_owned(),
                task_id: task_id.to_owned(),
                state: state.to_owned(),
            })
            .inc();
        if let Some(ran) = ran {
            self.task_duration
                .get_or_create(&TaskLabels {
                    dag_id: dag_id.to_owned(),
                    task_id: task_id.to_owned(),
                })
                .observe(ran.as_secs_f64());
        }
    }

    /// The pools as they are now; pools no longer there disappear from the metrics.
    pub fn set_pools(&self, pools: &[PoolSlots]) {
        for family in [
            &self.pool_open_slots,
            &self.pool_running_slots,
            &self.pool_queued_slots,
        ] {
            family.clear();
        }
        for pool in pools {
            let labels = PoolLabels {
                pool_name: pool.name.clone(),
            };
            self.pool_open_slots.get_or_create(&labels).set(pool.open);
            self.pool_running_slots
                .get_or_create(&labels)
                .set(pool.running);
            self.pool_queued_slots
                .get_or_create(&labels)
                .set(pool.queued);
        }
    }

    /// A sync of the DAG source `source` ended; `failures` counts failures since its last
    /// success, `succeeded_at` is that success (Unix seconds) when there was one.
    pub fn source_synced(&self, source: &str, ok: bool, failures: u32, succeeded_at: Option<f64>) {
        let result = if ok { "ok" } else { "failed" };
        self.source_syncs
            .get_or_create(&SyncLabels {
                source: source.to_owned(),
                result: result.to_owned(),
            })
            .inc();
        let labels = SourceLabels {
            source: source.to_owned(),
        };
        self.source_failures
            .get_or_create(&labels)
            .set(i64::from(failures));
        if let Some(at) = succeeded_at {
            self.source_last_success.get_or_create(&labels).set(at);
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_value(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn a_finished_try_counts_by_state_and_times_its_task() {
        let metrics = Metrics::new();
        metrics.try_finished("etl", "load", "success", Some(Duration::from_millis(1500)));
        metrics.try_finished("etl", "load", "failed", Some(Duration::from_millis(10)));
        metrics.try_finished("etl", "wait", "up_for_reschedule", None);
        let text = metrics.encode();
        assert_eq!(line_value(&text, "airflow_ti_successes_total "), Some(1.0));
        assert_eq!(line_value(&text, "airflow_ti_failures_total "), Some(1.0));
        assert!(
            text.contains(
                r#"airflow_ti_finish_total{dag_id="etl",task_id="wait",state="up_for_reschedule"} 1"#
            ),
            "{text}"
        );
        assert_eq!(
            line_value(
                &text,
                r#"airflow_task_duration_count{dag_id="etl",task_id="load"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            line_value(
                &text,
                r#"airflow_task_duration_sum{dag_id="etl",task_id="load"}"#
            ),
            Some(1.51)
        );
        assert!(!text.contains(r#"airflow_task_duration_count{dag_id="etl",task_id="wait"}"#));
    }

    #[test]
    fn a_pool_gone_from_the_store_leaves_the_metrics() {
        let metrics = Metrics::new();
        let pool = |name: &str, open| PoolSlots {
            name: name.into(),
            open,
            running: 2,
            queued: 1,
        };
        metrics.set_pools(&[pool("default_pool", 125), pool("gpu", 3)]);
        metrics.set_pools(&[pool("default_pool", 120)]);
        let text = metrics.encode();
        assert_eq!(
            line_value(
                &text,
                r#"airflow_pool_open_slots{pool_name="default_pool"}"#
            ),
            Some(120.0)
        );
        assert!(!text.contains(r#"pool_name="gpu""#), "{text}");
    }

    #[test]
    fn a_source_s_failures_reset_and_its_last_success_is_kept() {
        let metrics = Metrics::new();
        metrics.source_synced("repo", true, 0, Some(1_700_000_000.0));
        metrics.source_synced("repo", false, 1, None);
        metrics.source_synced("repo", false, 2, None);
        let text = metrics.encode();
        assert_eq!(
            line_value(&text, r#"updraft_source_failures{source="repo"}"#),
            Some(2.0)
        );
        assert_eq!(
            line_value(
                &text,
                r#"updraft_source_syncs_total{source="repo",result="failed"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            line_value(
                &text,
                r#"updraft_source_last_success_timestamp_seconds{source="repo"}"#
            ),
            Some(1_700_000_000.0)
        );
    }

    #[test]
    fn the_text_is_openmetrics_with_help_and_the_version() {
        let text = Metrics::new().encode();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("# TYPE airflow_scheduler_scheduler_loop_duration histogram"));
        assert!(text.contains(&format!(
            r#"updraft_build_info{{version="{}"}} 1"#,
            env!("CARGO_PKG_VERSION")
        )));
    }
}
