//! `shoal device ...`, the command line for people, against the real server: every
//! subcommand, and the errors a person sees when something is wrong.

use serde_json::Value;
use system_tests::Server;

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("the command prints JSON")
}

#[test]
fn devices_are_created_shown_listed_given_connection_strings_and_deleted() {
    // Setup: a fresh server. Expectation: each subcommand does what `az iot hub
    // device-identity` does, and what one prints agrees with what the others print.
    let server = Server::start().expect("shoal starts");
    let created = json(&server.cli(&["device", "create", "cli-dev"]).unwrap());
    assert_eq!(created["deviceId"], "cli-dev");
    assert_eq!(created["status"], "enabled");
    let primary = created["authentication"]["symmetricKey"]["primaryKey"]
        .as_str()
        .expect("a generated primary key")
        .to_owned();
    let secondary = created["authentication"]["symmetricKey"]["secondaryKey"]
        .as_str()
        .expect("a generated secondary key")
        .to_owned();
    assert_ne!(primary, secondary);

    let shown = json(&server.cli(&["device", "show", "cli-dev"]).unwrap());
    assert_eq!(shown["deviceId"], "cli-dev");
    assert_eq!(
        shown["authentication"]["symmetricKey"]["primaryKey"],
        primary.as_str()
    );
    assert_eq!(shown["etag"], created["etag"]);

    server
        .cli(&["device", "create", "cli-off", "--disabled"])
        .unwrap();
    let listed = server.cli(&["device", "list"]).unwrap();
    let rows: Vec<&str> = listed.lines().collect();
    assert!(rows[0].starts_with("DEVICE"), "a header row: {listed}");
    let row_of = |id: &str| {
        rows.iter()
            .find(|row| row.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("{id} is listed: {listed}"))
            .to_string()
    };
    assert!(row_of("cli-dev").contains("enabled"));
    assert!(row_of("cli-off").contains("disabled"));
    assert_eq!(rows.last(), Some(&"2 device(s)"));

    let connection_string = server
        .cli(&["device", "connection-string", "cli-dev"])
        .unwrap();
    assert_eq!(
        connection_string.trim(),
        format!("HostName=localhost;DeviceId=cli-dev;SharedAccessKey={primary}")
    );
    let with_secondary = server
        .cli(&["device", "connection-string", "cli-dev", "--secondary"])
        .unwrap();
    assert!(
        with_secondary
            .trim()
            .ends_with(&format!("SharedAccessKey={secondary}"))
    );

    let module = json(
        &server
            .cli(&["device", "create", "cli-dev", "--module", "cam"])
            .unwrap(),
    );
    assert_eq!(module["moduleId"], "cam");
    let module_key = module["authentication"]["symmetricKey"]["primaryKey"]
        .as_str()
        .expect("a generated module key");
    let modules = server
        .cli(&["device", "list", "--device", "cli-dev"])
        .unwrap();
    assert!(
        modules
            .lines()
            .any(|row| row.split_whitespace().next() == Some("cam")),
        "{modules}"
    );
    assert!(
        modules.trim_end().ends_with("1 module(s) of cli-dev"),
        "{modules}"
    );
    let module_string = server
        .cli(&["device", "connection-string", "cli-dev", "--module", "cam"])
        .unwrap();
    assert_eq!(
        module_string.trim(),
        format!("HostName=localhost;DeviceId=cli-dev;ModuleId=cam;SharedAccessKey={module_key}")
    );
    assert_eq!(
        server
            .cli(&["device", "delete", "cli-dev", "--module", "cam"])
            .unwrap()
            .trim(),
        "deleted module cam of device cli-dev"
    );

    assert_eq!(
        server.cli(&["device", "delete", "cli-dev"]).unwrap().trim(),
        "deleted device cli-dev and its modules"
    );
    let listed = server.cli(&["device", "list"]).unwrap();
    assert!(!listed.contains("cli-dev"), "{listed}");
    assert!(listed.trim_end().ends_with("1 device(s)"), "{listed}");
}

#[test]
fn mistakes_get_errors_that_say_what_is_wrong() {
    // Setup: a server with one device. Expectation: unknown devices, duplicates and asking
    // for the key of an X.509 device fail with a non-zero exit and IoT Hub's error code.
    let server = Server::start().expect("shoal starts");
    server.cli(&["device", "create", "cli-once"]).unwrap();

    let missing = server
        .cli(&["device", "show", "cli-nobody"])
        .expect_err("an unknown device is an error")
        .to_string();
    assert!(
        missing.contains("404") && missing.contains("DeviceNotFound"),
        "{missing}"
    );
    let duplicate = server
        .cli(&["device", "create", "cli-once"])
        .expect_err("creating an existing device is an error")
        .to_string();
    assert!(
        duplicate.contains("409") && duplicate.contains("DeviceAlreadyExists"),
        "{duplicate}"
    );
    let deleted_twice = server
        .cli(&["device", "delete", "cli-nobody"])
        .expect_err("deleting an unknown device is an error")
        .to_string();
    assert!(deleted_twice.contains("DeviceNotFound"), "{deleted_twice}");

    server
        .cli(&["device", "create", "cli-x509", "--x509", &"AB".repeat(20)])
        .unwrap();
    let no_key = server
        .cli(&["device", "connection-string", "cli-x509"])
        .expect_err("an X.509 device has no key to print")
        .to_string();
    assert!(no_key.contains("X.509"), "{no_key}");

    let invalid = server
        .cli(&["device", "create", "bad id with spaces"])
        .expect_err("an invalid id is refused")
        .to_string();
    assert!(invalid.contains("400"), "{invalid}");
}
