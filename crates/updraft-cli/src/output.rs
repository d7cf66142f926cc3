//! Tables for people, JSON and YAML for scripts, plain columns for `grep` and `awk` (the
//! formats of Airflow's `--output`).

use clap::ValueEnum;
use comfy_table::{ContentArrangement, Table, presets};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
    /// Columns aligned with spaces, a header line, no borders.
    Plain,
}

/// Rows are JSON objects; the table shows `columns` in order.
pub fn print_rows(format: Format, columns: &[&str], rows: &[Value]) {
    match format {
        Format::Json | Format::Yaml => print_value(format, &Value::Array(rows.to_vec())),
        Format::Table | Format::Plain => {
            if rows.is_empty() {
                println!("No data found");
                return;
            }
            let mut table = Table::new();
            if format == Format::Table {
                table
                    .load_style(presets::UTF8_FULL_CONDENSED)
                    .set_content_arrangement(ContentArrangement::Dynamic);
            } else {
                table.load_style(presets::NOTHING);
            }
            table.set_header(columns.to_vec());
            for row in rows {
                table.add_row(columns.iter().map(|c| cell(row.get(*c))));
            }
            println!("{table}");
        }
    }
}

/// One object: JSON, YAML, or `key: value` lines.
pub fn print_object(format: Format, value: &Value) {
    match format {
        Format::Json | Format::Yaml => print_value(format, value),
        Format::Table | Format::Plain => {
            if let Value::Object(map) = value {
                for (k, v) in map {
                    println!("{k}: {}", cell(Some(v)));
                }
            } else {
                println!("{}", cell(Some(value)));
            }
        }
    }
}

/// A value as JSON (one line), or as YAML for [`Format::Yaml`].
pub fn print_value(format: Format, value: &Value) {
    if format == Format::Yaml {
        match serde_saphyr::to_string(value) {
            Ok(yaml) => print!("{yaml}"),
            // A JSON value always serializes; JSON is YAML should it ever not.
            Err(_) => println!("{value}"),
        }
    } else {
        println!("{value}");
    }
}

fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| cell(Some(v)))
            .collect::<Vec<_>>()
            .join(", "),
        Some(other) => other.to_string(),
    }
}
