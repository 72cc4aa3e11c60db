//! Identity id validation (checklist R2).

/// Longest device or module id.
pub const ID_CHARS_MAX: usize = 128;

fn validate(kind: &str, id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > ID_CHARS_MAX {
        return Err(format!(
            "A {kind} id has 1 to 128 characters; '{id}' has {}.",
            id.len()
        ));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-.+%_#*?!(),=@$'".contains(*c)))
    {
        return Err(format!(
            "A {kind} id may hold ASCII letters, digits and - . + % _ # * ? ! ( ) , = @ $ '; '{id}' holds {bad:?}."
        ));
    }
    Ok(())
}

/// Checks a device id.
pub fn validate_device_id(id: &str) -> Result<(), String> {
    validate("device", id)
}

/// Checks a module id.
pub fn validate_module_id(id: &str) -> Result<(), String> {
    validate("module", id)
}
