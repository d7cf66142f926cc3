//! The results: one table on the terminal, JSON with every sample, and a chart.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::{Value, json};

use crate::figures::{
    Better, FIGURES, Figure, Samples, Summary, advantage, advantage_words, compact, meets,
};

/// Who a sample is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Updraft,
    Airflow,
    /// The physical limit of the same work on this machine.
    Limit,
}

/// Every engine's samples of one figure, and what to know when reading them.
#[derive(Debug, Default, Clone)]
pub struct Row {
    pub updraft: Samples,
    pub airflow: Samples,
    pub limit: Samples,
    pub notes: Vec<String>,
    /// Why updraft's figure was not measured, if it was not (shown in its cell).
    pub skipped: Option<String>,
}

#[derive(Debug, Default)]
pub struct Results {
    pub rows: BTreeMap<&'static str, Row>,
    pub airflow_version: Option<String>,
}

impl Results {
    pub fn row(&mut self, id: &'static str) -> &mut Row {
        self.rows.entry(id).or_default()
    }

    pub fn push(&mut self, id: &'static str, engine: Engine, value: f64) {
        let row = self.row(id);
        match engine {
            Engine::Updraft => row.updraft.push(value),
            Engine::Airflow => row.airflow.push(value),
            Engine::Limit => row.limit.push(value),
        }
    }

    pub fn skip(&mut self, id: &'static str, why: impl Into<String>) {
        self.row(id).skipped = Some(why.into());
    }

    pub fn note(&mut self, id: &'static str, note: impl Into<String>) {
        let note = note.into();
        let row = self.row(id);
        if !row.notes.contains(&note) {
            row.notes.push(note);
        }
    }

    /// The figures measured, in table order.
    fn measured(&self) -> impl Iterator<Item = (&'static Figure, &Row)> {
        FIGURES
            .iter()
            .filter_map(|f| self.rows.get(f.id).map(|row| (f, row)))
    }
}

fn cell(summary: Option<Summary>) -> String {
    match summary {
        None => "—".into(),
        Some(s) if s.min == s.max => compact(s.median),
        Some(s) => format!(
            "{} ({}–{})",
            compact(s.median),
            compact(s.min),
            compact(s.max)
        ),
    }
}

fn ratio_cell(figure: &Figure, ours: Option<Summary>, theirs: Option<Summary>) -> String {
    match (ours, theirs) {
        (Some(o), Some(t)) => advantage(figure.better(), o.median, t.median)
            .map(|a| advantage_words(figure.kind, a))
            .unwrap_or_else(|| "—".into()),
        _ => "—".into(),
    }
}

fn target_cell(figure: &Figure, ours: Option<Summary>) -> String {
    let Some(target) = figure.target else {
        return "—".into();
    };
    let sign = match figure.better() {
        Better::Lower => "≤",
        Better::Higher => "≥",
    };
    let verdict = match ours {
        Some(o) if meets(figure.better(), o.median, target) => " met",
        Some(_) => " MISSED",
        None => "",
    };
    format!("{sign} {}{verdict}", compact(target))
}

/// The table printed at the end of a run.
pub fn table(results: &Results) -> Table {
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header([
            "figure",
            "updraft",
            "Airflow",
            "limit",
            "updraft/Airflow",
            "updraft/limit",
            "target",
        ]);
    for (figure, row) in results.measured() {
        let ours = row.updraft.summary();
        let airflow = row.airflow.summary();
        let limit = row.limit.summary();
        let updraft_cell = match &row.skipped {
            Some(why) if ours.is_none() => why.clone(),
            _ => cell(ours),
        };
        table.add_row([
            format!("{} ({})", figure.label, figure.unit),
            updraft_cell,
            cell(airflow),
            cell(limit),
            ratio_cell(figure, ours, airflow),
            ratio_cell(figure, ours, limit),
            target_cell(figure, ours),
        ]);
    }
    table
}

/// Notes under the table, one per line, numbered by figure.
pub fn notes(results: &Results) -> Vec<String> {
    results
        .measured()
        .flat_map(|(figure, row)| {
            row.notes
                .iter()
                .map(move |n| format!("{}: {n}", figure.label))
        })
        .collect()
}

fn summary_json(samples: &Samples) -> Value {
    match samples.summary() {
        Some(s) => {
            json!({"samples": samples.values, "median": s.median, "min": s.min, "max": s.max})
        }
        None => Value::Null,
    }
}

/// Everything, for the record: machine, commit, every sample.
pub fn to_json(results: &Results, context: Value) -> Value {
    let figures: Vec<Value> = results
        .measured()
        .map(|(figure, row)| {
            let ours = row.updraft.summary();
            let ratio = |other: &Samples| match (ours, other.summary()) {
                (Some(o), Some(t)) => advantage(figure.better(), o.median, t.median),
                _ => None,
            };
            json!({
                "id": figure.id,
                "label": figure.label,
                "unit": figure.unit,
                "better": figure.better(),
                "target": figure.target,
                "target_met": match (ours, figure.target) {
                    (Some(o), Some(t)) => Some(meets(figure.better(), o.median, t)),
                    _ => None,
                },
                "updraft": summary_json(&row.updraft),
                "airflow": summary_json(&row.airflow),
                "limit": summary_json(&row.limit),
                "advantage_over_airflow": ratio(&row.airflow),
                "advantage_over_limit": ratio(&row.limit),
                "notes": row.notes,
                "skipped": row.skipped,
            })
        })
        .collect();
    json!({"context": context, "airflow_version": results.airflow_version, "figures": figures})
}

const UPDRAFT_COLOR: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const AIRFLOW_COLOR: RGBColor = RGBColor(0xd6, 0x27, 0x28);
const LIMIT_COLOR: RGBColor = RGBColor(0x7f, 0x7f, 0x7f);

/// One panel per figure: the three medians as bars on a log scale (min–max as a whisker),
/// the target as a green line.
pub fn chart(results: &Results, title: &str, path: &Path) -> Result<()> {
    let measured: Vec<_> = results.measured().collect();
    let columns = 2usize;
    let rows = measured.len().div_ceil(columns).max(1);
    let root = SVGBackend::new(path, (1000, 60 + 260 * rows as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let (header, body) = root.split_vertically(60);
    header.draw_text(
        title,
        &("sans-serif", 20).into_text_style(&header),
        (20, 15),
    )?;
    header.draw_text(
        "blue: updraft   red: Apache Airflow   grey: physical limit   green line: target   (log scale)",
        &("sans-serif", 13).into_text_style(&header),
        (20, 40),
    )?;
    let panels = body.split_evenly((rows, columns));
    for ((figure, row), panel) in measured.iter().zip(panels.iter()) {
        draw_panel(panel, figure, row)?;
    }
    root.present()?;
    Ok(())
}

fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    figure: &Figure,
    row: &Row,
) -> Result<()> {
    let bars: Vec<(&str, Option<Summary>, RGBColor)> = vec![
        ("updraft", row.updraft.summary(), UPDRAFT_COLOR),
        ("Airflow", row.airflow.summary(), AIRFLOW_COLOR),
        ("limit", row.limit.summary(), LIMIT_COLOR),
    ];
    let mut values: Vec<f64> = bars
        .iter()
        .filter_map(|(_, s, _)| s.map(|s| s.max))
        .chain(figure.target)
        .filter(|v| *v > 0.0)
        .collect();
    values.extend(bars.iter().filter_map(|(_, s, _)| s.map(|s| s.min)));
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(0.0, f64::max);
    if !lo.is_finite() || hi <= 0.0 {
        let why = row.skipped.as_deref().unwrap_or("not measured");
        area.draw_text(
            &format!("{}: {why}", figure.label),
            &("sans-serif", 13).into_text_style(area),
            (20, 20),
        )?;
        return Ok(());
    }
    let (y_lo, y_hi) = (lo / 3.0, hi * 3.0);
    let direction = match figure.better() {
        Better::Lower => "lower is better",
        Better::Higher => "higher is better",
    };
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{} ({}, {direction})", figure.label, figure.unit),
            ("sans-serif", 13),
        )
        .margin(12)
        .x_label_area_size(22)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..3f64, (y_lo..y_hi).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .y_labels(5)
        .y_label_formatter(&|v| compact(*v))
        .draw()?;
    for (i, (name, summary, color)) in bars.iter().enumerate() {
        let x = i as f64;
        let Some(s) = summary else {
            chart.draw_series(std::iter::once(Text::new(
                format!("{name}: —"),
                (x + 0.2, y_lo * 1.5),
                ("sans-serif", 12),
            )))?;
            continue;
        };
        chart.draw_series(std::iter::once(Rectangle::new(
            [(x + 0.15, y_lo), (x + 0.85, s.median)],
            color.filled(),
        )))?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(x + 0.5, s.min), (x + 0.5, s.max)],
            BLACK.stroke_width(1),
        )))?;
        // Above the bar and its whisker.
        chart.draw_series(std::iter::once(Text::new(
            format!("{name} {}", compact(s.median)),
            (x + 0.15, s.max.max(s.median) * 1.12),
            TextStyle::from(("sans-serif", 12).into_font()).pos(Pos::new(HPos::Left, VPos::Bottom)),
        )))?;
    }
    if let Some(target) = figure.target {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(0.0, target), (3.0, target)],
            GREEN.stroke_width(2),
        )))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results() -> Results {
        let mut r = Results::default();
        for v in [0.15, 0.14, 0.16] {
            r.row("chain40_run").updraft.push(v);
        }
        r.row("chain40_run").airflow.push(45.3);
        r.row("chain40_run").limit.push(0.05);
        r.row("idle_pss").updraft.push(40.0);
        r.note("idle_pss", "Airflow with its 2 bench DAGs");
        r
    }

    #[test]
    fn the_table_shows_medians_ranges_ratios_and_targets() {
        let text = table(&results()).to_string();
        assert!(text.contains("0.150 (0.140–0.160)"), "{text}");
        assert!(text.contains("302× faster"), "{text}");
        assert!(text.contains("3.00× slower"), "{text}");
        assert!(text.contains("updraft/Airflow") && text.contains("updraft/limit"));
        assert!(text.contains("≤ 0.200 met"), "{text}");
        assert!(text.contains("≤ 30.0 MISSED"), "{text}");
        // Figures not measured are not listed.
        assert!(!text.contains("1,000 independent"), "{text}");
    }

    #[test]
    fn missing_values_are_dashes_and_a_skipped_figure_says_why() {
        let mut r = Results::default();
        r.push("noop_sqlite", Engine::Updraft, 24_000.0);
        r.skip("noop_postgres", "skipped: PostgreSQL 15 not installed");
        let text = table(&r).to_string();
        let line = |needle: &str| {
            text.lines()
                .find(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("no {needle} in {text}"))
                .to_string()
        };
        let sqlite = line("SQLite");
        assert!(
            sqlite.contains("24,000") && sqlite.contains("≥ 20,000 met"),
            "{sqlite}"
        );
        assert_eq!(sqlite.matches('—').count(), 4, "{sqlite}");
        // The reason may wrap over lines: look for its start.
        assert!(text.contains("skipped:"), "{text}");
        let json = to_json(&r, json!({}));
        assert_eq!(
            json["figures"][1]["skipped"],
            "skipped: PostgreSQL 15 not installed"
        );
    }

    #[test]
    fn json_keeps_every_sample_and_the_verdicts() {
        let v = to_json(&results(), json!({"machine": "test"}));
        let chain = &v["figures"][0];
        assert_eq!(chain["id"], "chain40_run");
        assert_eq!(chain["updraft"]["samples"].as_array().unwrap().len(), 3);
        assert_eq!(chain["target_met"], true);
        assert_eq!(v["figures"][1]["target_met"], false);
        assert_eq!(v["figures"][1]["notes"][0], "Airflow with its 2 bench DAGs");
        assert!(v["figures"][1]["airflow"].is_null());
    }

    #[test]
    fn the_chart_is_an_svg_with_a_panel_per_figure() {
        let dir = std::env::temp_dir().join(format!("updraft-bench-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("chart.svg");
        chart(&results(), "test", &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("chain of 40"));
        assert!(svg.contains("control plane idle"));
    }
}
