//! Tables for people, JSON for scripts.

use clap::ValueEnum;
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Rows are JSON objects; the table shows `columns` in order.
pub fn print_rows(format: Format, columns: &[&str], rows: &[Value]) {
    match format {
        Format::Json => println!("{}", Value::Array(rows.to_vec())),
        Format::Table => {
            if rows.is_empty() {
                println!("No data found");
                return;
            }
            let mut table = Table::new();
            table
                .load_style(UTF8_FULL_CONDENSED)
                .set_content_arrangement(ContentArrangement::Dynamic)
                .set_header(columns.to_vec());
            for row in rows {
                table.add_row(columns.iter().map(|c| cell(row.get(*c))));
            }
            println!("{table}");
        }
    }
}

/// One object: JSON, or `key: value` lines.
pub fn print_object(format: Format, value: &Value) {
    match format {
        Format::Json => println!("{value}"),
        Format::Table => {
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
