//! The CONNECT user name: `{host}/{clientId}/?api-version=...&DeviceClientType=...`.
//!
//! Parsed loosely. The host and client id are not URL-encoded by the SDK; the query values
//! are. `DeviceClientType` varies from host to host, older clients leave the query out or its
//! `?`, and unknown query keys are ignored.

use std::borrow::Cow;

use super::Error;
use super::properties::percent_decode;

/// A parsed CONNECT user name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username<'a> {
    /// The host name the device was configured with (`HostName`, not `GatewayHostName`).
    pub host: &'a str,
    /// The client id; equal to the CONNECT client id.
    pub client_id: &'a str,
    /// `api-version`, e.g. `2019-10-01` or `2020-09-30`.
    pub api_version: Option<Cow<'a, str>>,
    /// `DeviceClientType`, the SDK's user agent, for logs.
    pub device_client_type: Option<Cow<'a, str>>,
    /// `model-id`, the IoT Plug and Play model the device implements, e.g.
    /// `dtmi:com:example:Thermostat;1`.
    pub model_id: Option<Cow<'a, str>>,
}

impl<'a> Username<'a> {
    /// Parses `username` and checks that it names `client_id`, the CONNECT client id.
    /// Answered with CONNACK 4 when it does not.
    pub fn parse(username: &'a str, client_id: &str) -> Result<Self, Error> {
        let (host, rest) = username.split_once('/').ok_or(Error::MalformedUsername {
            detail: "no '/' after the host",
        })?;
        if host.is_empty() {
            return Err(Error::MalformedUsername {
                detail: "the host is empty",
            });
        }
        // The client id may hold '/' (a module) and '?' (the id charset allows it), so it is
        // matched against the CONNECT client id rather than searched for a delimiter.
        let rest = rest
            .strip_prefix(client_id)
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
            .ok_or(Error::UsernameClientIdMismatch)?;
        let client_id = &username[host.len() + 1..host.len() + 1 + client_id.len()];
        let rest = rest.strip_prefix('/').unwrap_or(rest);
        let query = match rest.strip_prefix('?') {
            Some(query) => query,
            // Old clients write `{host}/{deviceId}/api-version=...` without the '?'. Anything
            // else here is more path: the user name names a longer client id (a module).
            None if rest.is_empty() || (rest.contains('=') && !rest.contains('/')) => rest,
            None => return Err(Error::UsernameClientIdMismatch),
        };
        let mut parsed = Self {
            host,
            client_id,
            api_version: None,
            device_client_type: None,
            model_id: None,
        };
        for pair in query.split('&') {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            let slot = match key {
                "api-version" => &mut parsed.api_version,
                "DeviceClientType" => &mut parsed.device_client_type,
                "model-id" => &mut parsed.model_id,
                _ => continue,
            };
            *slot = Some(percent_decode(value));
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_observed_sdk_username_parses() {
        let username = "localhost/dev1/?api-version=2019-10-01&DeviceClientType=azure-iot-device-iothub-py%2F2.14.0%283.11.7%3BLinux%20%231%20SMP%20PREEMPT_DYNAMIC%20%400%3Bx86_64%29";
        let parsed = Username::parse(username, "dev1").unwrap();
        assert_eq!(parsed.host, "localhost");
        assert_eq!(parsed.client_id, "dev1");
        assert_eq!(parsed.api_version.as_deref(), Some("2019-10-01"));
        assert_eq!(
            parsed.device_client_type.as_deref(),
            Some(
                "azure-iot-device-iothub-py/2.14.0(3.11.7;Linux #1 SMP PREEMPT_DYNAMIC @0;x86_64)"
            )
        );
        assert_eq!(parsed.model_id, None);
    }

    #[test]
    fn a_module_username_with_a_model_id_parses() {
        let username = "myhub.example.net/dev1/mod1/?api-version=2020-09-30&DeviceClientType=x&model-id=dtmi%3Acom%3Aexample%3AThermostat%3B1";
        let parsed = Username::parse(username, "dev1/mod1").unwrap();
        assert_eq!(parsed.host, "myhub.example.net");
        assert_eq!(parsed.client_id, "dev1/mod1");
        assert_eq!(parsed.api_version.as_deref(), Some("2020-09-30"));
        assert_eq!(
            parsed.model_id.as_deref(),
            Some("dtmi:com:example:Thermostat;1")
        );
    }

    #[test]
    fn older_and_odd_shapes_are_tolerated() {
        for username in [
            "h/dev1",
            "h/dev1/",
            "h/dev1/?",
            "h/dev1/api-version=2016-11-14",
            "h/dev1/?api-version=2016-11-14&unknown&x=%zz",
        ] {
            let parsed = Username::parse(username, "dev1").unwrap();
            assert_eq!((parsed.host, parsed.client_id), ("h", "dev1"), "{username}");
        }
        // An id that holds '?' and a module id that starts with it.
        let parsed = Username::parse("h/d?1/?m/?api-version=1", "d?1/?m").unwrap();
        assert_eq!(parsed.client_id, "d?1/?m");
        assert_eq!(parsed.api_version.as_deref(), Some("1"));
    }

    #[test]
    fn a_username_naming_another_client_is_a_mismatch() {
        for (username, client_id) in [
            ("h/dev2/?api-version=1", "dev1"),
            ("h/dev10/?api-version=1", "dev1"),
            ("h/dev1/?api-version=1", "dev1/mod1"),
            ("h/dev1/mod1/?api-version=1", "dev1"),
            ("h/dev1/mod1", "dev1"),
            ("h/", "dev1"),
        ] {
            assert_eq!(
                Username::parse(username, client_id),
                Err(Error::UsernameClientIdMismatch),
                "{username}"
            );
        }
    }

    #[test]
    fn a_username_without_a_host_is_malformed() {
        assert!(matches!(
            Username::parse("dev1", "dev1"),
            Err(Error::MalformedUsername { .. })
        ));
        assert!(matches!(
            Username::parse("/dev1/", "dev1"),
            Err(Error::MalformedUsername { .. })
        ));
    }
}
