//! rustls configurations for the generator (client) and the floor broker (server), on the
//! ring provider like the rest of the workspace.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::{Deserialize, Serialize};

/// Which TLS versions a client offers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsVersions {
    /// TLS 1.2 and 1.3; the server picks (1.3 with every server here).
    #[default]
    Any,
    /// TLS 1.2 only, like the Python device SDK.
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[serde(rename = "1.3")]
    Tls13,
}

impl std::str::FromStr for TlsVersions {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "any" => Ok(Self::Any),
            "1.2" => Ok(Self::Tls12),
            "1.3" => Ok(Self::Tls13),
            other => Err(format!("TLS version '{other}': use any, 1.2 or 1.3")),
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate in a PEM file.
pub fn load_certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let certificates = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing PEM certificates in {}", path.display()))?;
    if certificates.is_empty() {
        return Err(anyhow!("{} holds no certificate", path.display()));
    }
    Ok(certificates)
}

/// A client configuration trusting the certificates in `ca_path`.
///
/// Session resumption is off unless asked for: real devices (paho under the Python SDK) do a
/// full handshake on every connect, and a reconnect storm should cost what it costs them.
pub fn client_config(
    ca_path: &Path,
    versions: TlsVersions,
    resumption: bool,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in load_certificates(ca_path)? {
        roots
            .add(certificate)
            .with_context(|| format!("adding {} to the trust store", ca_path.display()))?;
    }
    let protocol_versions: &[&rustls::SupportedProtocolVersion] = match versions {
        TlsVersions::Any => rustls::ALL_VERSIONS,
        TlsVersions::Tls12 => &[&rustls::version::TLS12],
        TlsVersions::Tls13 => &[&rustls::version::TLS13],
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(protocol_versions)
        .context("choosing TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    if !resumption {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}

/// The name a client verifies the server certificate against (a DNS name or an IP).
pub fn server_name(name: &str) -> anyhow::Result<ServerName<'static>> {
    ServerName::try_from(name.to_owned())
        .map_err(|_| anyhow!("'{name}' is not a valid TLS server name"))
}

/// A server configuration presenting the chain in `cert_path` with the key in `key_path`.
pub fn server_config(
    cert_path: &Path,
    key_path: &Path,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let chain = load_certificates(cert_path)?;
    let pem = std::fs::read(key_path).with_context(|| format!("reading {}", key_path.display()))?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut pem.as_slice())
        .with_context(|| format!("parsing {}", key_path.display()))?
        .ok_or_else(|| anyhow!("{} holds no private key", key_path.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .context("choosing TLS versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("loading the certificate and key")?;
    Ok(Arc::new(config))
}
