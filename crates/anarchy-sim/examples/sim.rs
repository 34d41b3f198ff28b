//! `anarchy sim` without the full CLI: `cargo run --release -p anarchy-sim --example sim -- --peers 64`.

use clap::Parser;

#[derive(Parser)]
#[command(name = "sim", about = "Deterministic simulator of an Anarchy session")]
struct Cli {
    #[command(flatten)]
    sim: anarchy_sim::cli::SimArgs,
}

fn main() {
    let cli = Cli::parse();
    std::process::exit(anarchy_sim::cli::run(cli.sim));
}
