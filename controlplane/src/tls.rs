//! TLS material: the development CA, the server certificate, and the rustls configuration
//! shared by every listener (HTTPS here, MQTT and AMQP on the data-plane shards).
//!
//! With no certificate configured, the first start creates a development CA and a server
//! certificate signed by it (both ECDSA P-256) under `{data_dir}/tls/`, and later starts reuse
//! them. Clients trust the CA file (`ca.pem`). When the configured host names change, a new
//! server certificate is issued by the same CA, so clients that already trust it keep working.
//!
//! Why ECDSA P-256: a TLS 1.3 handshake costs about 129 us of server CPU with it against 765 us
//! with RSA-2048 on this machine kind, and every official SDK accepts it.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const CA_COMMON_NAME: &str = "Shoal Development CA";
const CA_ORGANIZATION: &str = "Shoal";

/// Where the TLS files of a server live, and whether Shoal made them.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain the listeners present (PEM).
    pub cert_path: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key_path: PathBuf,
    /// The CA clients should trust; `None` when the operator supplied their own certificate.
    pub ca_path: Option<PathBuf>,
}

/// What can go wrong while preparing TLS; all of them stop the server before it listens.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// rcgen refused to build a certificate.
    #[error("could not generate the development certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A PEM file holds no usable certificate or key.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the certificate and key pair.
    #[error("the certificate and key do not form a usable pair: {0}")]
    Rustls(#[from] rustls::Error),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Returns the development CA and a server certificate for `host_names` under `dir`, creating
/// what is missing. The server certificate is reissued when its recorded names differ.
pub fn ensure_development_certificates(
    dir: &Path,
    host_names: &[String],
) -> Result<TlsFiles, TlsError> {
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    let ca_path = dir.join("ca.pem");
    let ca_key_path = dir.join("ca.key");
    let cert_path = dir.join("server.pem");
    let key_path = dir.join("server.key");
    let names_path = dir.join("server.names");

    let ca_key = if ca_path.exists() && ca_key_path.exists() {
        let pem = fs::read_to_string(&ca_key_path).map_err(io_error(&ca_key_path))?;
        KeyPair::from_pem(&pem)?
    } else {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let ca_cert = ca_params()?.self_signed(&key)?;
        write_private(&ca_key_path, &key.serialize_pem())?;
        fs::write(&ca_path, ca_cert.pem()).map_err(io_error(&ca_path))?;
        // A new CA invalidates any server certificate issued by an older one.
        let _ = fs::remove_file(&names_path);
        key
    };

    let wanted_names = host_names.join("\n");
    let recorded_names = fs::read_to_string(&names_path).unwrap_or_default();
    if recorded_names != wanted_names || !cert_path.exists() || !key_path.exists() {
        let issuer = Issuer::new(ca_params()?, &ca_key);
        let server_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let server_cert = server_params(host_names)?.signed_by(&server_key, &issuer)?;
        let ca_pem = fs::read_to_string(&ca_path).map_err(io_error(&ca_path))?;
        write_private(&key_path, &server_key.serialize_pem())?;
        fs::write(&cert_path, format!("{}{}", server_cert.pem(), ca_pem))
            .map_err(io_error(&cert_path))?;
        fs::write(&names_path, &wanted_names).map_err(io_error(&names_path))?;
    }
    Ok(TlsFiles {
        cert_path,
        key_path,
        ca_path: Some(ca_path),
    })
}

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CA_COMMON_NAME);
    name.push(DnType::OrganizationName, CA_ORGANIZATION);
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2049, 12, 31);
    Ok(params)
}

fn server_params(host_names: &[String]) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut name = DistinguishedName::new();
    name.push(
        DnType::CommonName,
        host_names.first().map_or("localhost", String::as_str),
    );
    params.distinguished_name = name;
    for host in host_names {
        let san = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.clone().try_into()?),
        };
        params.subject_alt_names.push(san);
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    // Clients reject server certificates valid for more than 825 days (Apple) only when they
    // chain to public roots; a development CA is exempt, so keep it long-lived.
    params.not_after = rcgen::date_time_ymd(2049, 12, 31);
    Ok(params)
}

fn write_private(path: &Path, contents: &str) -> Result<(), TlsError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error(path))?;
    file.write_all(contents.as_bytes()).map_err(io_error(path))
}

/// Loads a PEM certificate chain and private key.
pub fn load_certified_key(
    files: &TlsFiles,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let cert_pem = fs::read(&files.cert_path).map_err(io_error(&files.cert_path))?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Pem {
            path: files.cert_path.clone(),
            reason: error.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: files.cert_path.clone(),
            reason: "no CERTIFICATE block".into(),
        });
    }
    let key_pem = fs::read(&files.key_path).map_err(io_error(&files.key_path))?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|error| TlsError::Pem {
            path: files.key_path.clone(),
            reason: error.to_string(),
        })?
        .ok_or_else(|| TlsError::Pem {
            path: files.key_path.clone(),
            reason: "no PRIVATE KEY block".into(),
        })?;
    Ok((certs, key))
}

/// Builds the rustls server configuration every listener uses: TLS 1.2 and 1.3 (the Python
/// device SDK speaks only 1.2), the ring provider, and key exchange limited to X25519 and P-256.
///
/// Why not rustls's default provider: it offers X25519MLKEM768 first, which measured 40% more
/// server CPU per handshake than X25519 here, and no IoT Hub SDK asks for it.
pub fn server_config(
    files: &TlsFiles,
    alpn_protocols: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let (certs, key) = load_certified_key(files)?;
    let mut provider = rustls::crypto::ring::default_provider();
    provider.kx_groups = vec![
        rustls::crypto::ring::kx_group::X25519,
        rustls::crypto::ring::kx_group::SECP256R1,
    ];
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = alpn_protocols.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_certificates_are_created_once_and_reissued_when_names_change() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let first = ensure_development_certificates(dir.path(), &names).unwrap();
        let ca_before = fs::read(first.ca_path.as_ref().unwrap()).unwrap();
        let cert_before = fs::read(&first.cert_path).unwrap();

        let again = ensure_development_certificates(dir.path(), &names).unwrap();
        assert_eq!(fs::read(&again.cert_path).unwrap(), cert_before);

        let more = vec!["hub.example".to_owned(), "localhost".to_owned()];
        let reissued = ensure_development_certificates(dir.path(), &more).unwrap();
        assert_eq!(
            fs::read(reissued.ca_path.as_ref().unwrap()).unwrap(),
            ca_before
        );
        assert_ne!(fs::read(&reissued.cert_path).unwrap(), cert_before);
        server_config(&reissued, &[b"http/1.1"]).unwrap();
    }
}
