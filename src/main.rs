//! `shoal`: a self-hosted server that speaks Azure IoT Hub's protocols.
//!
//! `shoal` (or `shoal serve`) runs both planes in one process on embedded defaults; the other
//! subcommands are tools for people that talk to a running server.

mod cli;
mod config;
mod events;
mod serve;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "shoal",
    version,
    about = "A self-hosted server that speaks Azure IoT Hub's protocols"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Clone, Default, clap::Args)]
struct ServeArgs {
    /// A TOML configuration file (see `shoal print-default-config`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (registry, partition logs, development certificates).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The host name clients dial.
    #[arg(long)]
    hostname: Option<String>,
    /// HTTPS port (service REST API).
    #[arg(long)]
    https_port: Option<u16>,
    /// MQTT over TLS port.
    #[arg(long)]
    mqtt_port: Option<u16>,
    /// AMQP over TLS port.
    #[arg(long)]
    amqp_port: Option<u16>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Print the default configuration, every key documented.
    PrintDefaultConfig,
    /// Read the records of the built-in endpoint's partitions.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Manage device and module identities of a running server.
    Device {
        #[command(flatten)]
        target: cli::Target,
        #[command(subcommand)]
        command: cli::DeviceCommand,
    },
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// Print records as they arrive, from the data directory's partition files. Shows records
    /// as written: with ack = "durable" one can appear a flush before its device's PUBACK.
    Tail(events::TailArgs),
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHOAL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour for people at a terminal; plain text for log files and collectors.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        None => run_serve(&cli.serve),
        Some(Command::Serve(args)) => run_serve(&args),
        Some(Command::PrintDefaultConfig) => {
            print!("{}", config::DEFAULT_CONFIG);
            Ok(())
        }
        Some(Command::Device { target, command }) => cli::run(&target, command),
        Some(Command::Events {
            command: EventsCommand::Tail(args),
        }) => events::tail(&args),
    };
    if let Err(error) = result {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

fn run_serve(args: &ServeArgs) -> anyhow::Result<()> {
    let overrides = config::Overrides {
        data_dir: args.data_dir.clone(),
        hostname: args.hostname.clone(),
        https_port: args.https_port,
        mqtt_port: args.mqtt_port,
        amqp_port: args.amqp_port,
    };
    let config = config::Config::load(args.config.as_deref(), std::env::vars(), &overrides)?;
    serve::serve(&config)
}
