//! A small blocking client of the service REST API, for the `shoal` CLI, the load generator
//! and the tests: connection-string parsing, token signing, and the registry calls.

use std::path::Path;

use dataplane_wire::sas;
use serde_json::Value;

/// A parsed service connection string:
/// `HostName=host[:port];SharedAccessKeyName=policy;SharedAccessKey=key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConnectionString {
    /// `HostName`, with its port if it has one.
    pub host_name: String,
    /// `SharedAccessKeyName`.
    pub key_name: String,
    /// `SharedAccessKey`, base64.
    pub key: String,
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The connection string lacks a field or is malformed.
    #[error("connection string: {0}")]
    ConnectionString(String),
    /// The CA file could not be read or parsed.
    #[error("CA certificate {path}: {reason}")]
    CaCertificate {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("{status} {code}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// IoT Hub error code name, when the body had one.
        code: String,
        /// The message from the body.
        message: String,
    },
    /// The request did not complete.
    #[error("{0}")]
    Transport(String),
}

impl ServiceConnectionString {
    /// Parses a connection string; keys are case-insensitive as in the SDKs.
    pub fn parse(text: &str) -> Result<Self, ClientError> {
        let mut host_name = None;
        let mut key_name = None;
        let mut key = None;
        for part in text.split(';').filter(|part| !part.trim().is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| ClientError::ConnectionString(format!("'{part}' has no '='")))?;
            match name.trim().to_ascii_lowercase().as_str() {
                "hostname" => host_name = Some(value.to_owned()),
                "sharedaccesskeyname" => key_name = Some(value.to_owned()),
                "sharedaccesskey" => key = Some(value.to_owned()),
                _ => {}
            }
        }
        let missing = |field: &str| ClientError::ConnectionString(format!("no {field}"));
        Ok(Self {
            host_name: host_name.ok_or_else(|| missing("HostName"))?,
            key_name: key_name.ok_or_else(|| missing("SharedAccessKeyName"))?,
            key: key.ok_or_else(|| missing("SharedAccessKey"))?,
        })
    }

    /// A token for the REST API, valid for `ttl_secs`.
    pub fn token(&self, ttl_secs: u64) -> Result<String, ClientError> {
        let key = sas::decode_key(&self.key)
            .map_err(|_| ClientError::ConnectionString("SharedAccessKey is not base64".into()))?;
        let expiry = crate::api::now_secs() + ttl_secs;
        Ok(sas::generate(
            &self.host_name,
            &key,
            expiry,
            Some(&self.key_name),
        ))
    }
}

/// A blocking REST client for one hub.
#[derive(Debug, Clone)]
pub struct ServiceClient {
    connection: ServiceConnectionString,
    agent: ureq::Agent,
}

/// The api-version every call carries, the one the service SDKs use.
pub const API_VERSION: &str = "2021-04-12";

impl ServiceClient {
    /// A client trusting the system roots plus `ca_path` (the development CA), if given.
    pub fn new(
        connection: ServiceConnectionString,
        ca_path: Option<&Path>,
    ) -> Result<Self, ClientError> {
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(path) = ca_path {
            let ca_error = |reason: String| ClientError::CaCertificate {
                path: path.display().to_string(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|error| ca_error(error.to_string()))?;
            let certificate = ureq::tls::Certificate::from_pem(&pem)
                .map_err(|error| ca_error(error.to_string()))?;
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&[certificate]));
        }
        let agent = ureq::Agent::config_builder()
            .tls_config(tls.build())
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(30)))
            .build()
            .new_agent();
        Ok(Self { connection, agent })
    }

    fn url(&self, path: &str) -> String {
        let separator = if path.contains('?') { '&' } else { '?' };
        format!(
            "https://{}{path}{separator}api-version={API_VERSION}",
            self.connection.host_name
        )
    }

    /// Sends a request and returns the parsed JSON body (`Null` for 204).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<Value, ClientError> {
        let token = self.connection.token(3600)?;
        let url = self.url(path);
        let transport =
            |error: ureq::Error| ClientError::Transport(format!("{method} {url}: {error}"));
        let builder = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("Authorization", token)
            .header("Accept", "application/json");
        let builder = match if_match {
            Some(etag) => builder.header("If-Match", format!("\"{etag}\"")),
            None => builder,
        };
        let response = match body {
            Some(body) => {
                let request = builder
                    .header("Content-Type", "application/json; charset=utf-8")
                    .body(body.to_string())
                    .map_err(|error| ClientError::Transport(error.to_string()))?;
                self.agent.run(request).map_err(transport)?
            }
            None => {
                let request = builder
                    .body(())
                    .map_err(|error| ClientError::Transport(error.to_string()))?;
                self.agent.run(request).map_err(transport)?
            }
        };
        let status = response.status().as_u16();
        let text = response.into_body().read_to_string().map_err(transport)?;
        let json: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status >= 300 {
            let message = json
                .get("message")
                .and_then(Value::as_str)
                .map_or_else(|| json.to_string(), str::to_owned);
            let code = json
                .get("Message")
                .and_then(Value::as_str)
                .and_then(|text| text.strip_prefix("ErrorCode:"))
                .and_then(|text| text.split(';').next())
                .unwrap_or("")
                .to_owned();
            return Err(ClientError::Status {
                status,
                code,
                message,
            });
        }
        Ok(json)
    }

    /// The connection string this client uses.
    pub fn connection(&self) -> &ServiceConnectionString {
        &self.connection
    }
}

/// Percent-encodes an id for a URL path segment.
pub fn path_segment(id: &str) -> String {
    percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC).to_string()
}
