//! `keyturn-fleet`: a discrete-event simulation of N keyturn daemons refreshing against one
//! secret store, beside the Datadog Agent's policy and a naive one. See `bench/fleet/README.md`.
//!
//! `cargo run --release -p keyturn-fleet -- --scenario NAME --json` prints one JSON object per
//! line, one per policy.

mod plot;
mod policy;
mod scenario;
mod sim;
mod store;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Parser;
use plotters::style::RGBColor;

use crate::policy::Kind;

/// Simulates a fleet of keyturn daemons against one secret store.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// `steady`, `restart`, `outage`, `triggers`, or `all`.
    #[arg(long, default_value = "all")]
    scenario: String,
    /// One JSON object per line (one per scenario and policy) instead of a table.
    #[arg(long)]
    json: bool,
    /// Seed of every random draw (printed with the figures).
    #[arg(long, default_value_t = 20_261_206)]
    seed: u64,
    /// Daemons in the fleet.
    #[arg(long, default_value_t = 10_000)]
    daemons: u32,
    /// Write one PNG per scenario (keyturn against the Agent's policy) into this directory.
    #[arg(long)]
    plots: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let names: Vec<&str> = if args.scenario == "all" {
        scenario::NAMES.to_vec()
    } else if let Some(name) = scenario::NAMES.iter().find(|n| **n == args.scenario) {
        vec![*name]
    } else {
        bail!(
            "unknown scenario {:?}: expected one of {} or all",
            args.scenario,
            scenario::NAMES.join(", ")
        );
    };
    if args.daemons == 0 {
        bail!("--daemons must be at least 1");
    }
    if !args.json {
        println!(
            "{:<9} {:<8} {:>8} {:>8} {:>6} {:>8} {:>8} {:>9} {:>10} {:>8} {:>7}",
            "scenario",
            "policy",
            "peak/s",
            "mean/s",
            "ratio",
            "peak60/s",
            "poisson",
            "refused",
            "recovery_s",
            "req/d/h",
            "autocor"
        );
    }
    for name in names {
        let Some(scenario) = scenario::named(name, args.daemons, args.seed) else {
            bail!("unknown scenario {name:?}");
        };
        let mut runs = Vec::new();
        for kind in Kind::ALL {
            let (figures, run) = scenario::measure(&scenario, kind);
            if args.json {
                println!("{}", serde_json::to_string(&figures)?);
            } else {
                println!(
                    "{:<9} {:<8} {:>8} {:>8.3} {:>6.2} {:>8.2} {:>8} {:>9} {:>10} {:>8.2} {:>7.3}",
                    figures.scenario,
                    figures.policy,
                    figures.peak_per_s,
                    figures.mean_per_s,
                    figures.peak_to_mean,
                    figures.peak_60s_per_s,
                    figures.poisson_peak_per_s,
                    figures.refused,
                    figures
                        .recovery_s
                        .map_or_else(|| "-".to_owned(), |s| format!("{s:.1}")),
                    figures.requests_per_daemon_per_hour,
                    figures.autocorrelation_max,
                );
            }
            runs.push((kind, run));
        }
        if let Some(dir) = &args.plots {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let series: Vec<plot::Series<'_>> = runs
                .iter()
                .filter(|(kind, _)| *kind != Kind::Naive)
                .map(|(kind, run)| plot::Series {
                    label: match kind {
                        Kind::Keyturn => "keyturn",
                        _ => "Agent's policy",
                    },
                    requests: &run.requests,
                    colour: match kind {
                        Kind::Keyturn => RGBColor(31, 119, 180),
                        _ => RGBColor(255, 127, 14),
                    },
                })
                .collect();
            let path = dir.join(format!("{name}.png"));
            plot::write(&path, &scenario, &series)?;
        }
    }
    Ok(())
}
