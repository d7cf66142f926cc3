//! The scenarios, in one table: what each runs on updraft, on Apache Airflow and as the
//! physical limit, and which figures its samples go to. Adding one: a row in [`SCENARIOS`],
//! its figures in [`crate::figures::FIGURES`], and its `Work` in the matches below.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use crate::airflow::AirflowRun;
use crate::process;
use crate::report::Engine;
use crate::updraft;

/// One sample of one figure.
pub type Sample = (&'static str, Engine, f64);

/// What a scenario makes updraft do.
#[derive(Debug, Clone, Copy)]
pub enum Work {
    /// `n` tasks in a chain, under `updraft standalone`.
    Chain { n: usize },
    /// `n` pod tasks in a chain, under `updraft standalone`, against the fake Kubernetes API.
    PodChain { n: usize },
    /// `n` independent tasks, under `updraft standalone`.
    Wide { n: usize, figure: &'static str },
    /// `bench/footprint DAGS`: idle memory and start → API ready.
    Footprint { dags: usize },
    /// Loading `files` new DAG files into a fresh database.
    DagFiles { files: usize },
    /// `bench/orchestration BACKEND 1 20 500 REPEAT` (repeats itself).
    Orchestration {
        backend: &'static str,
        figure: &'static str,
    },
    /// The same no-op task instances (SQLite) as `runs` runs of `tasks / runs` tasks, then as
    /// one run of `tasks`: the rate per task instance should not depend on the run's size.
    Scale { runs: usize, tasks: usize },
    /// A producer pushing an `n`-item list, a `true` task mapped over it and a downstream,
    /// under `updraft standalone`.
    Mapped { n: usize },
}

/// How many rounds of the scenario run on Airflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AirflowRounds {
    /// None: the Airflow script has no such shape.
    Never,
    /// `--airflow-repeat`.
    All,
    /// At most this many (a round that takes Airflow twenty minutes).
    AtMost(usize),
}

#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// The name `--only` takes.
    pub name: &'static str,
    pub work: Work,
    pub airflow: AirflowRounds,
}

/// Every scenario, in the order they run.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "chain40",
        work: Work::Chain { n: 40 },
        airflow: AirflowRounds::All,
    },
    Scenario {
        name: "podchain40",
        work: Work::PodChain { n: 40 },
        airflow: AirflowRounds::Never,
    },
    Scenario {
        name: "wide200",
        work: Work::Wide {
            n: 200,
            figure: "wide200",
        },
        airflow: AirflowRounds::All,
    },
    Scenario {
        name: "wide1000",
        work: Work::Wide {
            n: 1000,
            figure: "wide1000",
        },
        airflow: AirflowRounds::AtMost(1),
    },
    Scenario {
        name: "footprint",
        work: Work::Footprint { dags: 100 },
        airflow: AirflowRounds::Never,
    },
    Scenario {
        name: "dagfiles",
        work: Work::DagFiles { files: 10_000 },
        airflow: AirflowRounds::Never,
    },
    Scenario {
        name: "noop-sqlite",
        work: Work::Orchestration {
            backend: "sqlite",
            figure: "noop_sqlite",
        },
        airflow: AirflowRounds::Never,
    },
    Scenario {
        name: "scale",
        work: Work::Scale {
            runs: 100,
            tasks: 50_000,
        },
        airflow: AirflowRounds::Never,
    },
    Scenario {
        name: "map10k",
        work: Work::Mapped { n: 10_000 },
        airflow: AirflowRounds::Never,
    },
    Scenario {
        name: "noop-postgres",
        work: Work::Orchestration {
            backend: "postgres",
            figure: "noop_postgres",
        },
        airflow: AirflowRounds::Never,
    },
];

/// The scenarios `--only` names (all of them when it names none).
pub fn chosen(only: &[String]) -> Result<Vec<Scenario>, String> {
    if only.is_empty() {
        return Ok(SCENARIOS.to_vec());
    }
    only.iter()
        .map(|name| {
            SCENARIOS
                .iter()
                .find(|s| s.name == name)
                .copied()
                .ok_or_else(|| {
                    let names: Vec<_> = SCENARIOS.iter().map(|s| s.name).collect();
                    format!("unknown scenario {name} (known: {})", names.join(", "))
                })
        })
        .collect()
}

/// What the harness needs to measure updraft.
pub struct Setup<'a> {
    pub root: &'a Path,
    pub updraft: &'a Path,
    pub repeat: usize,
    /// The arguments of the DAG-loading command (see [`updraft::load_dags_command`]).
    pub load_dags: &'a [&'a str],
}

impl Scenario {
    /// Harness rounds: `repeat`, or one for a script that repeats itself.
    pub fn rounds(&self, repeat: usize) -> usize {
        match self.work {
            Work::Orchestration { .. } | Work::Scale { .. } => 1,
            _ => repeat,
        }
    }

    /// Why the scenario cannot run here, if it cannot.
    pub fn skipped(&self) -> Option<(&'static str, String)> {
        match self.work {
            Work::Orchestration {
                backend: "postgres",
                figure,
            } => updraft::postgres_unavailable().map(|why| (figure, format!("skipped: {why}"))),
            _ => None,
        }
    }

    /// One round on updraft, with the limit next to it.
    pub async fn measure(&self, setup: &Setup<'_>) -> Result<Vec<Sample>> {
        let mut samples = self.measure_updraft(setup).await?;
        samples.extend(self.measure_limit()?);
        Ok(samples)
    }

    async fn measure_updraft(&self, setup: &Setup<'_>) -> Result<Vec<Sample>> {
        let up = |id, v| (id, Engine::Updraft, v);
        Ok(match self.work {
            Work::Chain { n } => {
                let run = updraft::run_bench_dag(setup.updraft, n, true).await?;
                let gaps = run.edge_gaps_ms();
                let mut samples = vec![up("chain40_run", run.seconds())];
                samples.extend(updraft::quantile(&gaps, 0.5).map(|g| up("chain40_gap_median", g)));
                samples.extend(updraft::quantile(&gaps, 0.99).map(|g| up("chain40_gap_p99", g)));
                samples
            }
            Work::PodChain { n } => {
                let run = updraft::run_pod_chain(setup.updraft, n).await?;
                let gaps = run.edge_gaps_ms();
                let mut samples = vec![up("podchain40_run", run.seconds())];
                samples
                    .extend(updraft::quantile(&gaps, 0.5).map(|g| up("podchain40_gap_median", g)));
                samples
            }
            Work::Wide { n, figure } => {
                let run = updraft::run_bench_dag(setup.updraft, n, false).await?;
                vec![up(figure, n as f64 / run.seconds())]
            }
            Work::Mapped { n } => {
                let run = updraft::run_mapped_dag(setup.updraft, n).await?;
                vec![
                    up("map10k_mapped", run.mapped_seconds()),
                    up("map10k_downstream", run.downstream_seconds()),
                ]
            }
            Work::Footprint { dags } => {
                let (pss, ready) = updraft::footprint(setup.root, dags)?;
                vec![up("idle_pss", pss), up("start_ready", ready)]
            }
            Work::DagFiles { files } => {
                let (seconds, cat) =
                    updraft::load_dag_files(setup.updraft, files, setup.load_dags)?;
                vec![
                    up("dag_files_10k", seconds),
                    ("dag_files_10k", Engine::Limit, cat),
                ]
            }
            Work::Orchestration { backend, figure } => {
                // The script measures the limit in every round, next to updraft.
                let rates =
                    updraft::orchestration(setup.root, setup.updraft, backend, setup.repeat)?;
                let limit = rates.limit.into_iter().map(|r| (figure, Engine::Limit, r));
                rates
                    .updraft
                    .into_iter()
                    .map(|rate| up(figure, rate))
                    .chain(limit)
                    .collect()
            }
            Work::Scale { runs, tasks } => {
                let small = updraft::orchestration_shape(
                    setup.root,
                    setup.updraft,
                    runs,
                    tasks / runs,
                    setup.repeat,
                )?;
                let huge = updraft::orchestration_shape(
                    setup.root,
                    setup.updraft,
                    1,
                    tasks,
                    setup.repeat,
                )?;
                let ratios = updraft::round_ratios(&huge.updraft, &small.updraft);
                small
                    .updraft
                    .into_iter()
                    .map(|rate| up("scale_small_runs", rate))
                    .chain(
                        huge.updraft
                            .into_iter()
                            .map(|rate| up("scale_one_run", rate)),
                    )
                    .chain(ratios.into_iter().map(|ratio| up("scale_ratio", ratio)))
                    .collect()
            }
        })
    }

    /// The physical limit of the same work (the DAG files' and orchestration's limits are
    /// measured with them).
    fn measure_limit(&self) -> Result<Vec<Sample>> {
        let limit = |id, v| (id, Engine::Limit, v);
        Ok(match self.work {
            Work::Chain { n } => {
                let seconds = process::spawn_true(n)?;
                vec![
                    limit("chain40_run", seconds),
                    limit("chain40_gap_median", seconds / n as f64 * 1000.0),
                ]
            }
            Work::Wide { n, figure } => vec![limit(figure, n as f64 / process::spawn_true(n)?)],
            Work::Mapped { n } => {
                let seconds = process::spawn_true(n)?;
                vec![
                    limit("map10k_mapped", seconds),
                    limit("map10k_downstream", seconds),
                ]
            }
            Work::Footprint { .. } => vec![limit("start_ready", process::spawn_true_once()?)],
            Work::PodChain { .. }
            | Work::DagFiles { .. }
            | Work::Orchestration { .. }
            | Work::Scale { .. } => vec![],
        })
    }

    /// What to know when reading the scenario's figures.
    pub fn notes(&self, setup: &Setup<'_>) -> Vec<(&'static str, String)> {
        let note = |id, text: &str| (id, text.to_string());
        match self.work {
            Work::Chain { .. } => vec![
                note(
                    "chain40_run",
                    "limit: bash spawning /bin/true 40 times in a row",
                ),
                note(
                    "chain40_gap_median",
                    "limit: per-spawn time (the 40 spawns' total / 40)",
                ),
            ],
            Work::PodChain { .. } => vec![note(
                "podchain40_run",
                "updraft: pod tasks against updraft-kube-fake (each pod a local process, \
                 created, watched, its log streamed and deleted over HTTP); no Airflow \
                 equivalent; on a cluster, pod scheduling and start-up add seconds",
            )],
            Work::Wide { figure, .. } => vec![note(
                figure,
                "limit: bash spawning /bin/true as many times, in a row",
            )],
            Work::Mapped { n } => vec![
                (
                    "map10k_mapped",
                    format!(
                        "updraft: a producer pushes a {n}-item list, a `true` task is mapped over it ({n} instances); from the producer's end to the last mapped instance's end"
                    ),
                ),
                note(
                    "map10k_downstream",
                    "updraft: from the producer's end to the start of the task downstream of the mapped one (all_success: it waits for every instance)",
                ),
                note(
                    "map10k_mapped",
                    "limit: bash spawning /bin/true as many times, in a row",
                ),
            ],
            Work::Footprint { dags } => vec![
                (
                    "idle_pss",
                    format!("updraft: `updraft standalone` with {dags} DAGs"),
                ),
                (
                    "start_ready",
                    format!("updraft: `updraft standalone` with {dags} DAGs"),
                ),
                note("start_ready", "limit: spawning /bin/true once"),
            ],
            Work::DagFiles { .. } => vec![
                (
                    "dag_files_10k",
                    format!(
                        "updraft: `updraft {}`, spawn to exit",
                        setup.load_dags.join(" ")
                    ),
                ),
                note(
                    "dag_files_10k",
                    "limit: one `cat` reading every file (find -exec cat {} +)",
                ),
            ],
            Work::Orchestration { figure, .. } => vec![
                (
                    figure,
                    format!(
                        "updraft: bench/orchestration, {} rounds, no Airflow equivalent",
                        setup.repeat
                    ),
                ),
                note(
                    figure,
                    "limit: the database alone (sqlite3 or psql, no updraft) committing the \
                     same batches durably: each instance written queued then ended, 512 a \
                     transaction",
                ),
            ],
            Work::Scale { runs, tasks } => vec![(
                "scale_ratio",
                format!(
                    "updraft: bench/orchestration sqlite, {} rounds each: {tasks} no-op task \
                     instances as {runs} runs of {}, then as one run; the ratio is per round \
                     (one run's rate ÷ the small runs' rate); 1 means the run's size costs \
                     nothing",
                    setup.repeat,
                    tasks / runs
                ),
            )],
        }
    }

    /// The Airflow script's shape and size for this scenario, if it has one.
    pub fn airflow_shape(&self) -> Option<(&'static str, usize)> {
        if self.airflow == AirflowRounds::Never {
            return None;
        }
        match self.work {
            Work::Chain { n } => Some(("chain", n)),
            Work::Wide { n, .. } => Some(("wide", n)),
            _ => None,
        }
    }

    /// Rounds on Airflow when `--airflow-repeat` asks for `repeat`.
    pub fn airflow_rounds(&self, repeat: usize) -> usize {
        match self.airflow {
            AirflowRounds::Never => 0,
            AirflowRounds::All => repeat,
            AirflowRounds::AtMost(n) => repeat.min(n),
        }
    }

    /// The figure an Airflow note about this scenario goes to.
    pub fn airflow_figure(&self) -> &'static str {
        match self.work {
            Work::Wide { figure, .. } | Work::Orchestration { figure, .. } => figure,
            Work::Chain { .. } => "chain40_run",
            Work::PodChain { .. } => "podchain40_run",
            Work::Footprint { .. } => "idle_pss",
            Work::DagFiles { .. } => "dag_files_10k",
            Work::Scale { .. } => "scale_ratio",
            Work::Mapped { .. } => "map10k_mapped",
        }
    }

    /// The samples of one Airflow run. Every run starts Airflow afresh, so each also gives
    /// its idle memory and start-up.
    pub fn airflow_samples(&self, run: &AirflowRun) -> Vec<Sample> {
        let af = |id, v: Option<f64>| v.map(|v| (id, Engine::Airflow, v));
        let ms = |s: Option<f64>| s.map(|s| s * 1000.0);
        let shape_samples = match self.work {
            Work::Chain { .. } => vec![
                af("chain40_run", run.run_s),
                af("chain40_gap_median", ms(run.median_gap_s)),
                af("chain40_gap_p99", ms(run.p99_gap_s)),
            ],
            Work::Wide { figure, .. } => vec![af(figure, run.tasks_per_s)],
            _ => vec![],
        };
        shape_samples
            .into_iter()
            .chain([
                af("idle_pss", run.idle_pss_mb),
                af("start_ready", run.startup_s),
            ])
            .flatten()
            .collect()
    }
}

/// Notes on Airflow's idle memory and start-up, taken from its scenario runs.
pub fn airflow_notes(run: &AirflowRun) -> Vec<(&'static str, String)> {
    let processes = run
        .processes
        .map(|p| format!(", {p} processes"))
        .unwrap_or_default();
    vec![
        (
            "idle_pss",
            format!("Airflow: `airflow standalone` with its 2 bench DAGs{processes}"),
        ),
        (
            "start_ready",
            "Airflow: `airflow standalone` with its 2 bench DAGs, until both are parsed and \
             the API answers"
                .to_string(),
        ),
    ]
}

/// How long an Airflow round may take.
pub fn airflow_patience(minutes: u64) -> Duration {
    Duration::from_secs(minutes * 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::FIGURES;

    fn scenario(name: &str) -> Scenario {
        *SCENARIOS.iter().find(|s| s.name == name).unwrap()
    }

    #[test]
    fn only_picks_scenarios_by_name_and_rejects_unknown_ones() {
        let picked = chosen(&["wide200".into(), "chain40".into()]).unwrap();
        let names: Vec<_> = picked.iter().map(|s| s.name).collect();
        assert_eq!(names, ["wide200", "chain40"]);
        assert_eq!(chosen(&[]).unwrap().len(), SCENARIOS.len());
        let err = chosen(&["chain41".into()]).unwrap_err();
        assert!(
            err.contains("chain41") && err.contains("noop-sqlite"),
            "{err}"
        );
    }

    #[test]
    fn airflow_runs_only_the_shapes_its_script_has() {
        assert_eq!(scenario("chain40").airflow_shape(), Some(("chain", 40)));
        assert_eq!(scenario("wide1000").airflow_shape(), Some(("wide", 1000)));
        assert_eq!(scenario("dagfiles").airflow_shape(), None);
        assert_eq!(scenario("wide1000").airflow_rounds(3), 1);
        assert_eq!(scenario("wide200").airflow_rounds(3), 3);
        assert_eq!(scenario("footprint").airflow_rounds(3), 0);
    }

    #[test]
    fn an_airflow_chain_run_fills_the_chain_rows_in_ms_and_the_control_plane_rows() {
        let run = AirflowRun {
            version: "3.3.2".into(),
            state: Some("success".into()),
            run_s: Some(42.4),
            median_gap_s: Some(0.891),
            p99_gap_s: None,
            tasks_per_s: Some(0.94),
            idle_pss_mb: Some(1096.0),
            processes: Some(40),
            startup_s: Some(7.98),
        };
        let samples = scenario("chain40").airflow_samples(&run);
        let get = |id| samples.iter().find(|s| s.0 == id).map(|s| s.2);
        assert_eq!(get("chain40_run"), Some(42.4));
        assert_eq!(get("chain40_gap_median"), Some(891.0));
        assert_eq!(get("chain40_gap_p99"), None);
        assert_eq!(get("idle_pss"), Some(1096.0));
        assert_eq!(get("start_ready"), Some(7.98));
        assert!(get("wide200").is_none());
    }

    #[test]
    fn every_figure_a_scenario_names_is_in_the_table() {
        let known = |id: &str| FIGURES.iter().any(|f| f.id == id);
        for s in SCENARIOS {
            assert!(known(s.airflow_figure()), "{}", s.name);
            if let Work::Wide { figure, .. } | Work::Orchestration { figure, .. } = s.work {
                assert!(known(figure), "{figure}");
            }
        }
    }
}
