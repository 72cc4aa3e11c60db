//! Which identities a SAS token's resource covers, on top of [`crate::sas`].
//!
//! IoT Hub matches the token's resource URI as a prefix of the identity's (S3):
//!
//! | token                                  | `skn`  | authorizes                         | signed with        |
//! |----------------------------------------|--------|------------------------------------|--------------------|
//! | `{host}/devices/{d}`                   | absent | device `d` only                    | `d`'s key          |
//! | `{host}/devices/{d}/modules/{m}`       | absent | module `d/m` only                  | `d/m`'s key        |
//! | `{host}`                               | policy | any device or module               | the policy's key   |
//! | `{host}/devices/{d}`                   | policy | device `d` and its modules         | the policy's key   |
//! | `{host}/devices/{d}/modules/{m}`       | policy | module `d/m`                       | the policy's key   |
//!
//! A token without `skn` is signed with an identity's own key, so it must name exactly the
//! connecting identity: a module has keys of its own, and a device's token does not
//! authorize its modules. A policy token authorizes only if the policy grants DeviceConnect,
//! which the caller checks along with the signature.
//!
//! The host is compared without case and without any `:port` against the names the server
//! answers to; ids are compared exactly (they are case-sensitive).

use super::{ClientId, Error};
use crate::sas::SasToken;

/// Whose keys must verify a token, as [`authorize`] decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyScope<'t> {
    /// The connecting device's primary or secondary key.
    Device,
    /// The connecting module's primary or secondary key.
    Module,
    /// A shared access policy's key; the policy must grant DeviceConnect.
    Policy {
        /// The policy name, the token's `skn`.
        name: &'t str,
    },
}

/// Decides whether `token`'s resource authorizes `client`, and whose keys must verify it.
/// The signature and expiry are checked afterwards with [`SasToken::verify_either`] and the
/// keys of the returned scope. Answered with CONNACK 5 on error.
pub fn authorize<'t>(
    token: &'t SasToken,
    client: &ClientId<'_>,
    accepted_hosts: &[impl AsRef<str>],
) -> Result<KeyScope<'t>, Error> {
    let mismatch = |detail| Error::TokenScopeMismatch { detail };
    let resource = token.resource.trim_end_matches('/');
    let (host, path) = resource.split_once('/').unwrap_or((resource, ""));
    if !is_accepted_host(host, accepted_hosts) {
        return Err(Error::TokenHostNotAccepted);
    }
    let scope = Scope::parse(path).ok_or(mismatch(
        "the resource is not {host}, {host}/devices/{id} or {host}/devices/{id}/modules/{id}",
    ))?;
    match (&token.key_name, scope) {
        (None, Scope::Device(device_id)) if client.is(device_id, None) => Ok(KeyScope::Device),
        (None, Scope::Module(device_id, module_id)) if client.is(device_id, Some(module_id)) => {
            Ok(KeyScope::Module)
        }
        (None, Scope::Device(device_id)) if client.device_id() == device_id => Err(mismatch(
            "a device token does not authorize its modules; sign with the module's key",
        )),
        (None, Scope::Hub) => Err(mismatch(
            "a token without skn must name a device or module resource",
        )),
        (None, _) => Err(mismatch("the resource names another device or module")),
        (Some(name), scope) if scope.covers(client) => Ok(KeyScope::Policy { name }),
        (Some(_), _) => Err(mismatch(
            "the policy token's resource does not cover this device or module",
        )),
    }
}

/// Whether `host` (a token's or user name's) is one of `accepted_hosts`, ignoring case and
/// any `:port` on either side.
pub fn is_accepted_host(host: &str, accepted_hosts: &[impl AsRef<str>]) -> bool {
    let host = without_port(host);
    !host.is_empty()
        && accepted_hosts
            .iter()
            .any(|accepted| without_port(accepted.as_ref()).eq_ignore_ascii_case(host))
}

fn without_port(host: &str) -> &str {
    // `[::1]:8883` keeps its brackets; a bare IPv6 address has no port to strip.
    if let Some(end) = host.strip_prefix('[').and_then(|rest| rest.find(']')) {
        return &host[..end + 2];
    }
    match host.rsplit_once(':') {
        Some((name, port))
            if !name.contains(':')
                && !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            name
        }
        _ => host,
    }
}

/// The identity part of a token's resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope<'r> {
    Hub,
    Device(&'r str),
    Module(&'r str, &'r str),
}

impl<'r> Scope<'r> {
    fn parse(path: &'r str) -> Option<Self> {
        if path.is_empty() {
            return Some(Self::Hub);
        }
        let rest = path.strip_prefix("devices/")?;
        match rest.split_once('/') {
            None if !rest.is_empty() => Some(Self::Device(rest)),
            None => None,
            Some((device_id, rest)) => {
                let module_id = rest.strip_prefix("modules/")?;
                (!device_id.is_empty() && !module_id.is_empty() && !module_id.contains('/'))
                    .then_some(Self::Module(device_id, module_id))
            }
        }
    }

    /// Whether a policy token for this scope may act for `client` (a prefix match on whole
    /// path segments).
    fn covers(self, client: &ClientId<'_>) -> bool {
        match self {
            Self::Hub => true,
            Self::Device(device_id) => client.device_id() == device_id,
            Self::Module(device_id, module_id) => client.is(device_id, Some(module_id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sas::{decode_key, generate};

    const HOSTS: &[&str] = &["localhost", "myhub.example.net:8883"];
    const SE: u64 = 1_700_000_000;

    fn token(resource: &str, key_name: Option<&str>) -> SasToken {
        SasToken::parse(&generate(resource, &[0; 32], SE, key_name)).unwrap()
    }

    fn client(id: &str) -> ClientId<'_> {
        ClientId::parse(id).unwrap()
    }

    #[test]
    fn worked_device_and_module_tokens_authorize_their_identity_with_its_key() {
        let device = SasToken::parse("SharedAccessSignature sr=localhost%2Fdevices%2Fdev1&sig=FZOlNa5AJB6q3ivl3f%2FLUonFxr5QRUBtgfHSRBWHMbo%3D&se=1700000000").unwrap();
        assert_eq!(
            authorize(&device, &client("dev1"), HOSTS),
            Ok(KeyScope::Device)
        );
        let key = decode_key("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap();
        device.verify(&key, SE - 1).unwrap();
        let module = SasToken::parse("SharedAccessSignature sr=localhost%2Fdevices%2Fdev1%2Fmodules%2Fmod1&sig=KrkJ6DyK9wMaJZSYoUmxpRjXKHyaMmTvygAcrImLJuY%3D&se=1700000000").unwrap();
        assert_eq!(
            authorize(&module, &client("dev1/mod1"), HOSTS),
            Ok(KeyScope::Module)
        );
    }

    #[test]
    fn identity_tokens_do_not_stretch_to_other_identities() {
        for (resource, id) in [
            ("localhost/devices/dev1", "dev1/mod1"),
            ("localhost/devices/dev1", "dev2"),
            ("localhost/devices/dev1", "dev10"),
            ("localhost/devices/dev1/modules/mod1", "dev1"),
            ("localhost/devices/dev1/modules/mod1", "dev1/mod2"),
            ("localhost/devices/Dev1", "dev1"),
            ("localhost", "dev1"),
        ] {
            assert!(
                matches!(
                    authorize(&token(resource, None), &client(id), HOSTS),
                    Err(Error::TokenScopeMismatch { .. })
                ),
                "{resource} for {id}"
            );
        }
    }

    #[test]
    fn policy_tokens_cover_by_resource_prefix_on_whole_segments() {
        let policy = Some("device");
        for (resource, id, covered) in [
            ("localhost", "dev1", true),
            ("localhost/", "dev1/mod1", true),
            ("localhost/devices/dev1", "dev1", true),
            ("localhost/devices/dev1", "dev1/mod1", true),
            ("localhost/devices/dev1", "dev10", false),
            ("localhost/devices/dev1/modules/mod1", "dev1/mod1", true),
            ("localhost/devices/dev1/modules/mod1", "dev1", false),
        ] {
            let token = token(resource, policy);
            let result = authorize(&token, &client(id), HOSTS);
            if covered {
                assert_eq!(
                    result,
                    Ok(KeyScope::Policy { name: "device" }),
                    "{resource} {id}"
                );
            } else {
                assert!(
                    matches!(result, Err(Error::TokenScopeMismatch { .. })),
                    "{resource} {id}"
                );
            }
        }
    }

    #[test]
    fn hosts_compare_without_case_or_port() {
        for resource in [
            "LOCALHOST/devices/dev1",
            "localhost:8883/devices/dev1",
            "MyHub.Example.Net/devices/dev1",
            "myhub.example.net:443/devices/dev1",
        ] {
            assert_eq!(
                authorize(&token(resource, None), &client("dev1"), HOSTS),
                Ok(KeyScope::Device),
                "{resource}"
            );
        }
        for resource in [
            "otherhub/devices/dev1",
            "localhost.evil/devices/dev1",
            "/devices/dev1",
        ] {
            assert_eq!(
                authorize(&token(resource, None), &client("dev1"), HOSTS),
                Err(Error::TokenHostNotAccepted),
                "{resource}"
            );
        }
        assert!(is_accepted_host("[::1]:8883", &["[::1]"]));
        assert!(!is_accepted_host("", &[""]));
    }

    #[test]
    fn resources_that_name_no_identity_are_refused() {
        for resource in [
            "localhost/devices",
            "localhost/devices/",
            "localhost/devices/dev1/modules",
            "localhost/devices/dev1/modules/mod1/x",
            "localhost/devices/dev1/inputs/x",
            "localhost/other/dev1",
        ] {
            assert!(
                matches!(
                    authorize(&token(resource, Some("p")), &client("dev1"), HOSTS),
                    Err(Error::TokenScopeMismatch { .. })
                ),
                "{resource}"
            );
        }
    }
}
