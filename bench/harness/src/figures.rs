//! The figures the harness reports, their samples and how two of them compare.

use serde::Serialize;

/// Which way is better for a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Lower,
    Higher,
}

/// What a figure measures, which sets the way that is better and the words of a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A duration: lower is better, "faster" or "slower".
    Time,
    /// Memory: lower is better, "less" or "more".
    Memory,
    /// Work per second: higher is better, "faster" or "slower".
    Rate,
}

impl Kind {
    pub fn better(self) -> Better {
        match self {
            Kind::Time | Kind::Memory => Better::Lower,
            Kind::Rate => Better::Higher,
        }
    }

    /// The words for "better" and "worse" in this kind of figure.
    fn words(self) -> (&'static str, &'static str) {
        match self {
            Kind::Time | Kind::Rate => ("faster", "slower"),
            Kind::Memory => ("less", "more"),
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Figure {
    pub id: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    pub kind: Kind,
    pub target: Option<f64>,
}

impl Figure {
    pub fn better(&self) -> Better {
        self.kind.better()
    }
}

/// Every figure, in table order.
pub const FIGURES: &[Figure] = &[
    Figure {
        id: "chain40_run",
        label: "chain of 40 `true` tasks, run start → end",
        unit: "s",
        kind: Kind::Time,
        target: Some(0.2),
    },
    Figure {
        id: "chain40_gap_median",
        label: "chain of 40: median edge gap",
        unit: "ms",
        kind: Kind::Time,
        target: Some(2.0),
    },
    Figure {
        id: "chain40_gap_p99",
        label: "chain of 40: p99 edge gap",
        unit: "ms",
        kind: Kind::Time,
        target: None,
    },
    Figure {
        id: "podchain40_run",
        label: "chain of 40 pod tasks (fake API server), run start → end",
        unit: "s",
        kind: Kind::Time,
        target: None,
    },
    Figure {
        id: "podchain40_gap_median",
        label: "chain of 40 pod tasks: median edge gap",
        unit: "ms",
        kind: Kind::Time,
        target: None,
    },
    Figure {
        id: "wide200",
        label: "200 independent `true` tasks",
        unit: "tasks/s",
        kind: Kind::Rate,
        target: Some(1000.0),
    },
    Figure {
        id: "wide1000",
        label: "1,000 independent `true` tasks",
        unit: "tasks/s",
        kind: Kind::Rate,
        target: None,
    },
    Figure {
        id: "idle_pss",
        label: "control plane idle, PSS of every process",
        unit: "MB",
        kind: Kind::Memory,
        target: Some(30.0),
    },
    Figure {
        id: "start_ready",
        label: "start → API ready",
        unit: "s",
        kind: Kind::Time,
        target: Some(0.3),
    },
    Figure {
        id: "dag_files_10k",
        label: "load 10,000 DAG files (fresh database)",
        unit: "s",
        kind: Kind::Time,
        target: Some(1.0),
    },
    Figure {
        id: "noop_sqlite",
        label: "no-op orchestration, SQLite (20 runs × 500)",
        unit: "TI/s",
        kind: Kind::Rate,
        target: Some(20_000.0),
    },
    Figure {
        id: "scale_small_runs",
        label: "no-op, SQLite: 50,000 task instances as 100 runs × 500",
        unit: "TI/s",
        kind: Kind::Rate,
        target: None,
    },
    Figure {
        id: "scale_one_run",
        label: "no-op, SQLite: 50,000 task instances as one run",
        unit: "TI/s",
        kind: Kind::Rate,
        target: None,
    },
    Figure {
        id: "scale_ratio",
        label: "one run of 50,000 ÷ 100 runs × 500 (rate per task instance)",
        unit: "×",
        kind: Kind::Rate,
        target: Some(0.8),
    },
    Figure {
        id: "map10k_mapped",
        label: "10,000 mapped `true` instances: producer end → last instance done",
        unit: "s",
        kind: Kind::Time,
        target: None,
    },
    Figure {
        id: "map10k_downstream",
        label: "10,000 mapped instances: producer end → downstream start",
        unit: "s",
        kind: Kind::Time,
        target: None,
    },
    Figure {
        id: "noop_postgres",
        label: "no-op orchestration, PostgreSQL 15 (20 runs × 500)",
        unit: "TI/s",
        kind: Kind::Rate,
        target: Some(20_000.0),
    },
];

/// Repeated measurements of one figure by one engine.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Samples {
    pub values: Vec<f64>,
}

/// Median, min and max of some samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Samples {
    pub fn push(&mut self, value: f64) {
        if value.is_finite() {
            self.values.push(value);
        }
    }

    pub fn summary(&self) -> Option<Summary> {
        if self.values.is_empty() {
            return None;
        }
        let mut sorted = self.values.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Summary {
            median,
            min: sorted[0],
            max: sorted[n - 1],
        })
    }
}

/// How many times better (> 1) or worse (< 1) `ours` is than `theirs`.
pub fn advantage(better: Better, ours: f64, theirs: f64) -> Option<f64> {
    let ratio = match better {
        Better::Lower => theirs / ours,
        Better::Higher => ours / theirs,
    };
    ratio.is_finite().then_some(ratio).filter(|r| *r > 0.0)
}

/// How an advantage reads for a kind of figure: "312× faster", "49× less", "1.40× slower",
/// "same".
pub fn advantage_words(kind: Kind, advantage: f64) -> String {
    if (advantage - 1.0).abs() < 0.05 {
        return "same".into();
    }
    let (better, worse) = kind.words();
    let (times, word) = if advantage > 1.0 {
        (advantage, better)
    } else {
        (1.0 / advantage, worse)
    };
    format!("{}× {word}", compact(times))
}

/// Whether `value` meets `target` in the figure's direction.
pub fn meets(better: Better, value: f64, target: f64) -> bool {
    match better {
        Better::Lower => value <= target,
        Better::Higher => value >= target,
    }
}

/// A number with as many digits as it deserves: 0.149, 1.56, 45.3, 1,098, 12,345.
pub fn compact(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        thousands(v.round() as i64)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(v: &[f64]) -> Samples {
        let mut s = Samples::default();
        for x in v {
            s.push(*x);
        }
        s
    }

    #[test]
    fn median_min_max_of_odd_and_even_counts() {
        let odd = samples(&[3.0, 1.0, 2.0]).summary().unwrap();
        assert_eq!((odd.median, odd.min, odd.max), (2.0, 1.0, 3.0));
        let even = samples(&[4.0, 1.0, 3.0, 2.0]).summary().unwrap();
        assert_eq!((even.median, even.min, even.max), (2.5, 1.0, 4.0));
        assert!(samples(&[]).summary().is_none());
    }

    #[test]
    fn non_finite_samples_are_dropped() {
        let s = samples(&[f64::NAN, 1.0, f64::INFINITY]);
        assert_eq!(s.values, [1.0]);
    }

    #[test]
    fn advantage_follows_the_direction_of_the_figure() {
        // Times: 0.15 s against 45 s is 300 times better.
        let a = advantage(Better::Lower, 0.15, 45.0).unwrap();
        assert!((a - 300.0).abs() < 1e-9);
        assert_eq!(advantage_words(Kind::Time, a), "300× faster");
        // Rates: 7 tasks/s against 1,000 is slower for the one with 7.
        let b = advantage(Better::Higher, 7.0, 1000.0).unwrap();
        assert_eq!(advantage_words(Kind::Rate, b), "143× slower");
        // Memory: 20 MB against 1,000 MB is 50 times less; 60 MB against 20 MB, 3 times more.
        let c = advantage(Better::Lower, 20.0, 1000.0).unwrap();
        assert_eq!(advantage_words(Kind::Memory, c), "50.0× less");
        let d = advantage(Better::Lower, 60.0, 20.0).unwrap();
        assert_eq!(advantage_words(Kind::Memory, d), "3.00× more");
        assert_eq!(advantage_words(Kind::Time, 1.01), "same");
        assert!(advantage(Better::Lower, 0.0, 1.0).is_none());
    }

    #[test]
    fn targets_are_met_in_the_right_direction() {
        assert!(meets(Better::Lower, 0.15, 0.2));
        assert!(!meets(Better::Lower, 0.25, 0.2));
        assert!(meets(Better::Higher, 1200.0, 1000.0));
        assert!(!meets(Better::Higher, 900.0, 1000.0));
    }

    #[test]
    fn numbers_are_compact_and_grouped() {
        assert_eq!(compact(0.1494), "0.149");
        assert_eq!(compact(1.556), "1.56");
        assert_eq!(compact(45.31), "45.3");
        assert_eq!(compact(1098.0), "1,098");
        assert_eq!(compact(12345.4), "12,345");
    }

    #[test]
    fn the_kind_of_a_figure_sets_its_direction() {
        assert_eq!(Kind::Time.better(), Better::Lower);
        assert_eq!(Kind::Memory.better(), Better::Lower);
        assert_eq!(Kind::Rate.better(), Better::Higher);
        let wide = FIGURES.iter().find(|f| f.id == "wide200").unwrap();
        assert_eq!(wide.better(), Better::Higher);
    }

    #[test]
    fn every_figure_id_is_unique() {
        let mut ids: Vec<_> = FIGURES.iter().map(|f| f.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), FIGURES.len());
    }
}
