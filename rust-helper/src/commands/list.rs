//! list: the containers, a row each.

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::Result;
use serde::Serialize;

use super::show::{addresses, current_meta};
use crate::capabilities::network::addresses as network;
use crate::context::Context;
use crate::spec::GenerationMeta;
use crate::state::Phase;

/// How `list` prints its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Table, Format::Json, Format::Csv];

    /// Its name on the command line.
    pub fn key(self) -> &'static str {
        match self {
            Format::Table => "table",
            Format::Json => "json",
            Format::Csv => "csv",
        }
    }
}

/// A column of `list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Name,
    State,
    Ipv4,
    Generation,
    Autostart,
    Uids,
    Ipv6,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    name: String,
    state: String,
    ipv4: Option<Ipv4Addr>,
    /// The address of the current generation, where the running container
    /// still has another one (it gets this one at its next start).
    #[serde(skip_serializing_if = "Option::is_none")]
    ipv4_next_start: Option<Ipv4Addr>,
    generation: Option<u64>,
    autostart: Option<bool>,
    uids: String,
    /// Its global IPv6 addresses, while it runs.
    ipv6: Vec<Ipv6Addr>,
}

pub fn list(ctx: &Context, format: Format, columns: &[Column], no_header: bool) -> Result<()> {
    let state = ctx.store.read()?;
    let lxc = ctx.lxc();
    // -l: lxc-ls's own selection (a regular expression, --active, -g ...)
    // picks the containers listed.
    let selected = if ctx.lxc_args.is_empty() { None } else { Some(lxc.names(&ctx.lxc_args)?) };
    let active = lxc.active_states(state.containers.keys().map(String::as_str))?;
    let mut rows = Vec::new();
    for (name, entry) in &state.containers {
        if selected.as_ref().is_some_and(|names| !names.contains(name)) {
            continue;
        }
        let lxc_state = match entry.phase {
            Phase::Creating => "CREATING",
            Phase::Destroying => "DESTROYING",
            Phase::Ready | Phase::Updating => match active.get(name) {
                Some(found) => found.state,
                None if lxc.is_defined(name) => "STOPPED",
                None => "MISSING",
            },
        };
        let current = current_meta(ctx, name).unwrap_or(None);
        let meta = current.as_ref().map(|(_, meta)| meta);
        let (ipv4, ipv4_next_start) =
            addresses(|| ctx.store.started_with(name, entry), lxc_state == "RUNNING", meta);
        rows.push(Row {
            name: name.clone(),
            state: lxc_state.to_string(),
            ipv4,
            ipv4_next_start,
            generation: current.as_ref().map(|(number, _)| *number),
            autostart: meta.map(GenerationMeta::autostart),
            uids: entry.ids(&ctx.settings.host.idmap).to_string(),
            ipv6: active
                .get(name)
                .and_then(|found| found.init)
                .map(network::global_ipv6_addresses)
                .unwrap_or_default(),
        });
    }
    let columns = if columns.is_empty() { &Column::DEFAULT[..] } else { columns };
    match format {
        Format::Json => {
            let objects: Vec<serde_json::Value> =
                rows.iter().map(|row| row.json(columns)).collect();
            println!("{}", serde_json::to_string_pretty(&objects)?);
        }
        Format::Csv => {
            if !no_header {
                println!("{}", columns.iter().map(|c| c.key()).collect::<Vec<_>>().join(","));
            }
            for row in &rows {
                let cells: Vec<String> =
                    columns.iter().map(|&column| csv_cell(&row.cell(column, false))).collect();
                println!("{}", cells.join(","));
            }
        }
        Format::Table => {
            let header: Vec<String> = columns.iter().map(|c| c.key().to_uppercase()).collect();
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|row| columns.iter().map(|&column| row.cell(column, true)).collect())
                .collect();
            print_table(if no_header { None } else { Some(&header) }, &cells);
        }
    }
    Ok(())
}

impl Column {
    /// Every column, in the order the command line lists them.
    pub const ALL: [Column; 7] = [
        Column::Name,
        Column::State,
        Column::Ipv4,
        Column::Generation,
        Column::Autostart,
        Column::Uids,
        Column::Ipv6,
    ];

    /// The columns without --columns.
    pub const DEFAULT: [Column; 6] = [
        Column::Name,
        Column::State,
        Column::Ipv4,
        Column::Ipv6,
        Column::Generation,
        Column::Autostart,
    ];

    /// The column's name on the command line, in JSON and CSV (and,
    /// upper-cased, in a table).
    pub fn key(self) -> &'static str {
        match self {
            Column::Name => "name",
            Column::State => "state",
            Column::Ipv4 => "ipv4",
            Column::Generation => "generation",
            Column::Autostart => "autostart",
            Column::Uids => "uids",
            Column::Ipv6 => "ipv6",
        }
    }
}

impl Row {
    /// The row's `columns` as a JSON object; an address for the next start
    /// goes with ipv4.
    fn json(&self, columns: &[Column]) -> serde_json::Value {
        let all = serde_json::to_value(self).expect("a row serializes");
        let mut object = serde_json::Map::new();
        for column in columns {
            object.insert(column.key().to_string(), all[column.key()].clone());
            if *column == Column::Ipv4 && self.ipv4_next_start.is_some() {
                object.insert("ipv4NextStart".to_string(), all["ipv4NextStart"].clone());
            }
        }
        serde_json::Value::Object(object)
    }

    /// The cell of `column` as text; for people (`readable`), with the
    /// address of the next start and "-" for nothing.
    fn cell(&self, column: Column, readable: bool) -> String {
        let nothing = if readable { "-" } else { "" };
        let or_nothing = |value: Option<String>| value.unwrap_or_else(|| nothing.to_string());
        match column {
            Column::Name => self.name.clone(),
            Column::State => self.state.clone(),
            Column::Ipv4 => match (self.ipv4, self.ipv4_next_start) {
                (Some(now), Some(next)) if readable => format!("{now} ({next} at next start)"),
                (now, _) => or_nothing(now.map(|ip| ip.to_string())),
            },
            Column::Generation => or_nothing(self.generation.map(|n| n.to_string())),
            Column::Autostart => match self.autostart {
                Some(true) => if readable { "yes" } else { "true" }.to_string(),
                Some(false) => if readable { "no" } else { "false" }.to_string(),
                None => nothing.to_string(),
            },
            Column::Uids => self.uids.clone(),
            Column::Ipv6 if self.ipv6.is_empty() => nothing.to_string(),
            Column::Ipv6 => self.ipv6.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" "),
        }
    }
}

/// A CSV field (RFC 4180): quoted where it must be.
fn csv_cell(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn print_table(header: Option<&[String]>, rows: &[Vec<String>]) {
    let count = rows.first().map_or(header.map_or(0, <[String]>::len), Vec::len);
    let mut widths = vec![0; count];
    for row in header.into_iter().map(<[String]>::to_vec).chain(rows.iter().cloned()) {
        for (width, cell) in widths.iter_mut().zip(&row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> =
            cells.iter().zip(&widths).map(|(cell, &width)| format!("{cell:width$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    if let Some(header) = header {
        line(header);
    }
    for row in rows {
        line(row);
    }
}
