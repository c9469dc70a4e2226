//! `tessera`: one binary, one subcommand per role. Each role runs alone with flags or a config
//! file, so the same binary serves a laptop cluster and a multi-machine deployment.

mod admin;
mod admin_kms;
mod bench;
mod bench_meta;
mod bench_seal;
mod ca;
mod dev;
mod roles;

use clap::{Parser, Subcommand};
use tessera_runtime::telemetry::{self, LogFormat};

/// Tessera: an S3-compatible object store built for data protection.
#[derive(Debug, Parser)]
#[command(name = "tessera", version, about)]
struct Cli {
    /// Log format: text or json.
    #[arg(
        long,
        global = true,
        default_value = "text",
        env = "TESSERA_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a meta node (Raft member holding buckets, versions and membership).
    Meta(roles::MetaArgs),
    /// Run a data node (erasure-coded shards on local disk).
    Data(roles::DataArgs),
    /// Run the S3 gateway.
    Gateway(roles::GatewayArgs),
    /// Run the repair daemon (rebuilds lost or rotten shards, collects garbage).
    Repair(roles::RepairArgs),
    /// Start a local three-zone cluster as child processes; Ctrl-C stops it.
    Dev(dev::DevArgs),
    /// Inspect and administer a cluster.
    Admin(admin::AdminArgs),
    /// Load-test any S3 endpoint.
    Bench(bench::BenchArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Meta(args) => roles::run_meta(args).await,
            Command::Data(args) => roles::run_data(args).await,
            Command::Gateway(args) => roles::run_gateway(args).await,
            Command::Repair(args) => roles::run_repair(args).await,
            Command::Dev(args) => dev::run(args).await,
            Command::Admin(args) => admin::run(args).await,
            Command::Bench(args) => bench::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
