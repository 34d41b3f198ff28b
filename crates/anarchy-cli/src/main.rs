//! The `anarchy` binary: one subcommand per module (`keygen`, `node`, `demo`).
//! This file only parses the command line and dispatches; it owns no logic.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod demo;
mod keygen;
mod logging;
mod monitor;
mod node;
mod secret;

/// Serverless game-state sync over UDP.
#[derive(Debug, Parser)]
#[command(name = "anarchy", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

/// Every subcommand; each is implemented in its own module.
#[derive(Debug, Subcommand)]
enum Commands {
    /// Generate a new identity: a secret key (hex) and its peer id.
    Keygen(keygen::KeygenArgs),
    /// Run one peer until Ctrl-C, logging what happens.
    Node(node::NodeArgs),
    /// Run N players over real UDP on loopback and measure propagation.
    Demo(demo::DemoArgs),
    /// Simulate many peers over a faulty network, deterministically, checking invariants.
    Sim(Box<anarchy_sim::cli::SimArgs>),
    /// Watch a node's admin endpoint (`anarchy node --admin`) on a terminal dashboard.
    Monitor(monitor::MonitorArgs),
    // ---- future subcommands go here --------------------------------------------
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Commands::Keygen(args) => keygen::run(args),
        Commands::Node(args) => node::run(args),
        Commands::Demo(args) => demo::run(args),
        Commands::Monitor(args) => monitor::run(args),
        Commands::Sim(args) => ExitCode::from(u8::try_from(anarchy_sim::cli::run(*args)).unwrap_or(1)),
    }
}
