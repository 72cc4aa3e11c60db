//! Device and module ids, and the MQTT client id that carries them.

use super::{Error, IdKind, IdProblem};

/// The longest device or module id, in bytes (R2).
pub const ID_BYTES_MAX: usize = 128;

/// Checks a device id against IoT Hub's rules (R2): 1 to 128 characters, each an ASCII
/// letter or digit or one of `- . + % _ # * ? ! ( ) , = @ $ '`. Ids are case-sensitive.
pub fn validate_device_id(id: &str) -> Result<(), Error> {
    check_id(id).map_err(|problem| Error::InvalidId {
        kind: IdKind::Device,
        problem,
    })
}

/// Checks a module id; the rules are the device id's.
pub fn validate_module_id(id: &str) -> Result<(), Error> {
    check_id(id).map_err(|problem| Error::InvalidId {
        kind: IdKind::Module,
        problem,
    })
}

fn check_id(id: &str) -> Result<(), IdProblem> {
    if id.is_empty() {
        return Err(IdProblem::Empty);
    }
    if let Some((at, character)) = id
        .char_indices()
        .find(|&(_, character)| !is_id_character(character))
    {
        return Err(IdProblem::ForbiddenCharacter { character, at });
    }
    if id.len() > ID_BYTES_MAX {
        return Err(IdProblem::TooLong { bytes: id.len() });
    }
    Ok(())
}

const fn is_id_character(character: char) -> bool {
    character.is_ascii_alphanumeric()
        || matches!(
            character,
            '-' | '.'
                | '+'
                | '%'
                | '_'
                | '#'
                | '*'
                | '?'
                | '!'
                | '('
                | ')'
                | ','
                | '='
                | '@'
                | '$'
                | '\''
        )
}

/// The identity an MQTT connection claims: `{deviceId}` or `{deviceId}/{moduleId}`.
///
/// # Invariants
///
/// Both ids pass [`validate_device_id`] and [`validate_module_id`]; neither holds `/`, so the
/// split is unambiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientId<'a> {
    device_id: &'a str,
    module_id: Option<&'a str>,
}

impl<'a> ClientId<'a> {
    /// Parses a CONNECT client id. Answered with CONNACK 2 when invalid.
    pub fn parse(client_id: &'a str) -> Result<Self, Error> {
        let (device_id, module_id) = match client_id.split_once('/') {
            Some((device_id, module_id)) => (device_id, Some(module_id)),
            None => (client_id, None),
        };
        validate_device_id(device_id)?;
        if let Some(module_id) = module_id {
            validate_module_id(module_id)?;
        }
        Ok(Self {
            device_id,
            module_id,
        })
    }

    /// The device id.
    pub const fn device_id(&self) -> &'a str {
        self.device_id
    }

    /// The module id, for a module identity.
    pub const fn module_id(&self) -> Option<&'a str> {
        self.module_id
    }

    /// Whether this is a module identity.
    pub const fn is_module(&self) -> bool {
        self.module_id.is_some()
    }

    /// Whether `device_id` and `module_id` name this identity.
    pub(crate) fn is(&self, device_id: &str, module_id: Option<&str>) -> bool {
        self.device_id == device_id && self.module_id == module_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_and_module_client_ids_parse() {
        let device = ClientId::parse("dev1").unwrap();
        assert_eq!((device.device_id(), device.module_id()), ("dev1", None));
        assert!(!device.is_module());
        let module = ClientId::parse("dev1/mod1").unwrap();
        assert_eq!(
            (module.device_id(), module.module_id()),
            ("dev1", Some("mod1"))
        );
        assert!(module.is_module());
    }

    #[test]
    fn every_allowed_punctuation_mark_is_accepted() {
        let id = "a-.+%_#*?!(),=@$'Z9";
        validate_device_id(id).unwrap();
        validate_module_id(id).unwrap();
        ClientId::parse(&format!("{id}/{id}")).unwrap();
    }

    #[test]
    fn ids_at_and_over_128_bytes() {
        validate_device_id(&"d".repeat(128)).unwrap();
        assert_eq!(
            validate_device_id(&"d".repeat(129)),
            Err(Error::InvalidId {
                kind: IdKind::Device,
                problem: IdProblem::TooLong { bytes: 129 }
            })
        );
    }

    #[test]
    fn bad_client_ids_say_which_id_and_why() {
        for (client_id, kind, problem) in [
            ("", IdKind::Device, IdProblem::Empty),
            ("/mod1", IdKind::Device, IdProblem::Empty),
            ("dev1/", IdKind::Module, IdProblem::Empty),
            (
                "dev1/mod1/x",
                IdKind::Module,
                IdProblem::ForbiddenCharacter {
                    character: '/',
                    at: 4,
                },
            ),
            (
                "dev 1",
                IdKind::Device,
                IdProblem::ForbiddenCharacter {
                    character: ' ',
                    at: 3,
                },
            ),
            (
                "dév",
                IdKind::Device,
                IdProblem::ForbiddenCharacter {
                    character: 'é',
                    at: 1,
                },
            ),
            (
                "a&b",
                IdKind::Device,
                IdProblem::ForbiddenCharacter {
                    character: '&',
                    at: 1,
                },
            ),
        ] {
            assert_eq!(
                ClientId::parse(client_id),
                Err(Error::InvalidId { kind, problem }),
                "{client_id:?}"
            );
        }
    }

    #[test]
    fn every_ascii_character_outside_the_charset_is_refused() {
        let allowed = "-.+%_#*?!(),=@$'";
        for byte in 0u8..128 {
            let character = char::from(byte);
            let id = format!("a{character}");
            let expected = character.is_ascii_alphanumeric() || allowed.contains(character);
            assert_eq!(validate_device_id(&id).is_ok(), expected, "{character:?}");
        }
    }
}
