//! `shoal device ...`: registry commands for people, over the REST API like
//! `az iot hub device-identity`.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use controlplane::client::{ServiceClient, ServiceConnectionString, path_segment};
use serde_json::{Value, json};

/// Where the CLI finds the server.
#[derive(Debug, Args)]
pub struct Target {
    /// Data directory of a local server; its endpoints.json gives the connection string and CA.
    #[arg(long, default_value = "./shoal-data", global = true)]
    data_dir: PathBuf,
    /// A service connection string with RegistryRead/RegistryWrite (instead of endpoints.json).
    #[arg(long, env = "SHOAL_CONNECTION_STRING", global = true)]
    connection_string: Option<String>,
    /// The CA certificate (PEM) to trust (instead of endpoints.json's).
    #[arg(long, env = "SHOAL_CA_CERT", global = true)]
    ca_cert: Option<PathBuf>,
}

/// Device identity commands.
#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Register a device (or, with --module, a module).
    Create {
        /// Device id.
        device_id: String,
        /// Create a module of the device instead.
        #[arg(long)]
        module: Option<String>,
        /// Register it disabled.
        #[arg(long)]
        disabled: bool,
        /// Authenticate with X.509 thumbprints (primary[,secondary]) instead of keys.
        #[arg(long, value_name = "THUMBPRINTS")]
        x509: Option<String>,
        /// Mark it an IoT Edge device.
        #[arg(long)]
        edge: bool,
    },
    /// Show a device (or module) as JSON.
    Show {
        /// Device id.
        device_id: String,
        /// Show a module of the device instead.
        #[arg(long)]
        module: Option<String>,
    },
    /// List devices (or, with --device, that device's modules).
    List {
        /// At most this many (1-1000).
        #[arg(long, default_value_t = 1000)]
        top: u32,
        /// List the modules of this device instead.
        #[arg(long, value_name = "DEVICE_ID")]
        device: Option<String>,
    },
    /// Enable or disable a device, or renew the keys of a device (or module). Disabling a
    /// device, or any change to an identity's keys, closes its live connections; they
    /// reconnect with a key that is still valid.
    Update {
        /// Device id.
        device_id: String,
        /// Update a module of the device instead (keys only: modules have no status).
        #[arg(long)]
        module: Option<String>,
        /// The new status.
        #[arg(long, value_enum)]
        status: Option<Status>,
        /// Replace a key with a new random one, both keys, or swap them (like `az iot hub
        /// device-identity renew-key --key-type`).
        #[arg(long, value_enum, value_name = "KEY")]
        renew_key: Option<RenewKey>,
    },
    /// Delete a device and its modules (or, with --module, one module).
    Delete {
        /// Device id.
        device_id: String,
        /// Delete a module of the device instead.
        #[arg(long)]
        module: Option<String>,
    },
    /// Print the connection string a device (or module) connects with.
    ConnectionString {
        /// Device id.
        device_id: String,
        /// A module of the device.
        #[arg(long)]
        module: Option<String>,
        /// Use the secondary key.
        #[arg(long)]
        secondary: bool,
    },
}

/// A device's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Status {
    Enabled,
    Disabled,
}

/// Which symmetric key `update --renew-key` replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RenewKey {
    Primary,
    Secondary,
    Both,
    /// The primary becomes the secondary and the secondary the primary.
    Swap,
}

/// Applies `renew` to an identity's symmetric keys, in place.
fn renew_keys(identity: &mut Value, renew: RenewKey) -> anyhow::Result<()> {
    let keys = &mut identity["authentication"]["symmetricKey"];
    let (Some(primary), Some(secondary)) = (
        keys["primaryKey"].as_str().map(str::to_owned),
        keys["secondaryKey"].as_str().map(str::to_owned),
    ) else {
        bail!(
            "this identity has no symmetric keys to renew (its authentication type is {})",
            identity["authentication"]["type"]
        );
    };
    let new_key = controlplane::registry::keys::new_key;
    let (primary, secondary) = match renew {
        RenewKey::Primary => (new_key(), secondary),
        RenewKey::Secondary => (primary, new_key()),
        RenewKey::Both => (new_key(), new_key()),
        RenewKey::Swap => (secondary, primary),
    };
    *keys = json!({"primaryKey": primary, "secondaryKey": secondary});
    Ok(())
}

struct Resolved {
    client: ServiceClient,
    device_host: String,
}

fn resolve(target: &Target) -> anyhow::Result<Resolved> {
    let endpoints_path = target.data_dir.join(crate::serve::ENDPOINTS_FILE);
    let endpoints: Option<Value> = std::fs::read_to_string(&endpoints_path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    let connection_string = match (&target.connection_string, &endpoints) {
        (Some(text), _) => text.clone(),
        (None, Some(endpoints)) => endpoints["service_connection_string"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        (None, None) => bail!(
            "no server found: {} does not exist (is `shoal serve` running with that data directory?); or pass --connection-string",
            endpoints_path.display()
        ),
    };
    let ca_cert = target.ca_cert.clone().or_else(|| {
        endpoints
            .as_ref()
            .and_then(|endpoints| endpoints["ca_cert_path"].as_str())
            .map(PathBuf::from)
    });
    let connection = ServiceConnectionString::parse(&connection_string)?;
    // Devices dial the host without a port: MQTT and AMQP ports are fixed in the SDKs.
    let device_host = connection
        .host_name
        .rsplit_once(':')
        .map_or(connection.host_name.as_str(), |(host, _)| host)
        .to_owned();
    Ok(Resolved {
        client: ServiceClient::new(connection, ca_cert.as_deref())?,
        device_host,
    })
}

fn identity_path(device_id: &str, module: Option<&str>) -> String {
    match module {
        Some(module) => format!(
            "/devices/{}/modules/{}",
            path_segment(device_id),
            path_segment(module)
        ),
        None => format!("/devices/{}", path_segment(device_id)),
    }
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// Runs one device command.
pub fn run(target: &Target, command: DeviceCommand) -> anyhow::Result<()> {
    let resolved = resolve(target)?;
    let client = &resolved.client;
    match command {
        DeviceCommand::Create {
            device_id,
            module,
            disabled,
            x509,
            edge,
        } => {
            let authentication = match x509 {
                Some(thumbprints) => {
                    let mut parts = thumbprints.split(',');
                    json!({
                        "type": "selfSigned",
                        "x509Thumbprint": {
                            "primaryThumbprint": parts.next(),
                            "secondaryThumbprint": parts.next(),
                        },
                    })
                }
                None => json!({"type": "sas", "symmetricKey": {}}),
            };
            let body = match &module {
                Some(module) => json!({
                    "deviceId": device_id, "moduleId": module, "authentication": authentication,
                }),
                None => json!({
                    "deviceId": device_id,
                    "status": if disabled { "disabled" } else { "enabled" },
                    "authentication": authentication,
                    "capabilities": {"iotEdge": edge},
                }),
            };
            let created = client.call(
                "PUT",
                &identity_path(&device_id, module.as_deref()),
                Some(&body),
                None,
            )?;
            print_json(&created);
        }
        DeviceCommand::Show { device_id, module } => {
            print_json(&client.call(
                "GET",
                &identity_path(&device_id, module.as_deref()),
                None,
                None,
            )?);
        }
        DeviceCommand::List {
            device: Some(device_id),
            ..
        } => {
            let modules = client.call(
                "GET",
                &format!("{}/modules", identity_path(&device_id, None)),
                None,
                None,
            )?;
            let modules = modules.as_array().cloned().unwrap_or_default();
            println!("{:<40} {:<13} {:<10}", "MODULE", "CONNECTION", "AUTH");
            for module in &modules {
                println!(
                    "{:<40} {:<13} {:<10}",
                    module["moduleId"].as_str().unwrap_or_default(),
                    module["connectionState"].as_str().unwrap_or_default(),
                    module["authentication"]["type"]
                        .as_str()
                        .unwrap_or_default(),
                );
            }
            println!("{} module(s) of {device_id}", modules.len());
        }
        DeviceCommand::List { top, device: None } => {
            let devices = client.call("GET", &format!("/devices?top={top}"), None, None)?;
            let devices = devices.as_array().cloned().unwrap_or_default();
            println!(
                "{:<40} {:<9} {:<13} {:<10}",
                "DEVICE", "STATUS", "CONNECTION", "AUTH"
            );
            for device in &devices {
                println!(
                    "{:<40} {:<9} {:<13} {:<10}",
                    device["deviceId"].as_str().unwrap_or_default(),
                    device["status"].as_str().unwrap_or_default(),
                    device["connectionState"].as_str().unwrap_or_default(),
                    device["authentication"]["type"]
                        .as_str()
                        .unwrap_or_default(),
                );
            }
            println!("{} device(s)", devices.len());
        }
        DeviceCommand::Update {
            device_id,
            module,
            status,
            renew_key,
        } => {
            if status.is_none() && renew_key.is_none() {
                bail!("nothing to update: pass --status or --renew-key");
            }
            if module.is_some() && status.is_some() {
                bail!("modules have no status; only their keys can be renewed (--renew-key)");
            }
            let path = identity_path(&device_id, module.as_deref());
            let mut identity = client.call("GET", &path, None, None)?;
            if let Some(status) = status {
                identity["status"] = json!(match status {
                    Status::Enabled => "enabled",
                    Status::Disabled => "disabled",
                });
            }
            if let Some(renew) = renew_key {
                renew_keys(&mut identity, renew)?;
            }
            // Only if nobody changed it since it was read: a concurrent update gets a 412.
            let etag = identity["etag"]
                .as_str()
                .context("the server sent the identity without an etag")?
                .to_owned();
            let updated = client.call("PUT", &path, Some(&identity), Some(&etag))?;
            print_json(&updated);
        }
        DeviceCommand::Delete { device_id, module } => {
            client.call(
                "DELETE",
                &identity_path(&device_id, module.as_deref()),
                None,
                Some("*"),
            )?;
            match module {
                Some(module) => println!("deleted module {module} of device {device_id}"),
                None => println!("deleted device {device_id} and its modules"),
            }
        }
        DeviceCommand::ConnectionString {
            device_id,
            module,
            secondary,
        } => {
            let identity = client.call(
                "GET",
                &identity_path(&device_id, module.as_deref()),
                None,
                None,
            )?;
            let key_field = if secondary {
                "secondaryKey"
            } else {
                "primaryKey"
            };
            let key = identity["authentication"]["symmetricKey"][key_field]
                .as_str()
                .context("this identity has no symmetric keys (it authenticates with X.509)")?;
            let module = module
                .map(|module| format!(";ModuleId={module}"))
                .unwrap_or_default();
            println!(
                "HostName={};DeviceId={device_id}{module};SharedAccessKey={key}",
                resolved.device_host
            );
        }
    }
    Ok(())
}
