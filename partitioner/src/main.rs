//! `partitioner`: list disks, print a plan, apply it.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use partitioner::{Plan, discover_system};

#[derive(Parser)]
#[command(
    name = "partitioner",
    about = "Bulkhead's whole-disk installer partitioning"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Show every whole disk, what is on it and whether it is in use.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Compute and print the layout for DISK; writes nothing.
    Plan {
        #[arg(long, value_name = "DEV")]
        disk: String,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::List { json } => {
            let inv = discover_system().context("discovering disks")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&inv)?);
            } else {
                print!("{}", partitioner::discover::render_list(&inv));
            }
        }
        Cmd::Plan { disk, json } => {
            let inv = discover_system().context("discovering disks")?;
            let plan = Plan::new(&inv, &disk)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else {
                print!("{plan}");
            }
        }
    }
    Ok(())
}
