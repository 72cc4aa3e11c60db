//! `shoal device ...`, the command line for people, against the real server: every
//! subcommand, and the errors a person sees when something is wrong.

use serde_json::Value;
use system_tests::Server;

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("the command prints JSON")
}

/// Runs a command that must fail; returns what it printed as its error.
fn refused(server: &Server, arguments: &[&str], why: &str) -> String {
    server.cli(arguments).expect_err(why).to_string()
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

    let missing = refused(
        &server,
        &["device", "show", "cli-nobody"],
        "an unknown device is an error",
    );
    assert!(
        missing.contains("404") && missing.contains("DeviceNotFound"),
        "{missing}"
    );
    let duplicate = refused(
        &server,
        &["device", "create", "cli-once"],
        "creating an existing device is an error",
    );
    assert!(
        duplicate.contains("409") && duplicate.contains("DeviceAlreadyExists"),
        "{duplicate}"
    );
    let deleted_twice = refused(
        &server,
        &["device", "delete", "cli-nobody"],
        "deleting an unknown device is an error",
    );
    assert!(deleted_twice.contains("DeviceNotFound"), "{deleted_twice}");

    server
        .cli(&["device", "create", "cli-x509", "--x509", &"AB".repeat(20)])
        .unwrap();
    let no_key = refused(
        &server,
        &["device", "connection-string", "cli-x509"],
        "an X.509 device has no key to print",
    );
    assert!(no_key.contains("X.509"), "{no_key}");

    let invalid = refused(
        &server,
        &["device", "create", "bad id with spaces"],
        "an invalid id is refused",
    );
    assert!(invalid.contains("400"), "{invalid}");
}

#[test]
fn devices_are_disabled_enabled_and_given_new_keys() {
    // Setup: a device with a module, and an X.509 device. Expectation: `update` changes the
    // status and each kind of key renewal does what it says, leaving the rest as it was;
    // updates that cannot apply are refused with a reason, changing nothing.
    let server = Server::start().expect("shoal starts");
    let keys_of = |identity: &Value| {
        let keys = &identity["authentication"]["symmetricKey"];
        (
            keys["primaryKey"].as_str().expect("primary").to_owned(),
            keys["secondaryKey"].as_str().expect("secondary").to_owned(),
        )
    };
    let created = json(&server.cli(&["device", "create", "cli-upd"]).unwrap());
    let (primary, secondary) = keys_of(&created);

    let disabled = json(
        &server
            .cli(&["device", "update", "cli-upd", "--status", "disabled"])
            .unwrap(),
    );
    assert_eq!(disabled["status"], "disabled");
    assert_eq!(keys_of(&disabled), (primary.clone(), secondary.clone()));
    assert_ne!(
        disabled["etag"], created["etag"],
        "an update is a new version"
    );
    let shown = json(&server.cli(&["device", "show", "cli-upd"]).unwrap());
    assert_eq!(shown["status"], "disabled", "the change was stored");

    let swapped = json(
        &server
            .cli(&[
                "device",
                "update",
                "cli-upd",
                "--status",
                "enabled",
                "--renew-key",
                "swap",
            ])
            .unwrap(),
    );
    assert_eq!(swapped["status"], "enabled");
    assert_eq!(keys_of(&swapped), (secondary.clone(), primary.clone()));

    let renewed = json(
        &server
            .cli(&["device", "update", "cli-upd", "--renew-key", "primary"])
            .unwrap(),
    );
    let (new_primary, kept_secondary) = keys_of(&renewed);
    assert_eq!(kept_secondary, primary, "the secondary is untouched");
    assert!(new_primary != secondary && new_primary != primary);
    let both = keys_of(&json(
        &server
            .cli(&["device", "update", "cli-upd", "--renew-key", "both"])
            .unwrap(),
    ));
    assert!(both.0 != new_primary && both.1 != kept_secondary && both.0 != both.1);
    let connection_string = server
        .cli(&["device", "connection-string", "cli-upd"])
        .unwrap();
    assert!(
        connection_string.contains(&both.0),
        "connection strings use the new key: {connection_string}"
    );

    let module = json(
        &server
            .cli(&["device", "create", "cli-upd", "--module", "m1"])
            .unwrap(),
    );
    let module_keys = keys_of(&module);
    let module_renewed = json(
        &server
            .cli(&[
                "device",
                "update",
                "cli-upd",
                "--module",
                "m1",
                "--renew-key",
                "secondary",
            ])
            .unwrap(),
    );
    assert_eq!(module_renewed["moduleId"], "m1");
    assert_eq!(keys_of(&module_renewed).0, module_keys.0);
    assert_ne!(keys_of(&module_renewed).1, module_keys.1);

    let nothing = refused(
        &server,
        &["device", "update", "cli-upd"],
        "an update with nothing to change is refused",
    );
    assert!(nothing.contains("nothing to update"), "{nothing}");
    let module_status = refused(
        &server,
        &[
            "device", "update", "cli-upd", "--module", "m1", "--status", "disabled",
        ],
        "modules have no status",
    );
    assert!(module_status.contains("no status"), "{module_status}");
    server
        .cli(&[
            "device",
            "create",
            "cli-upd-x509",
            "--x509",
            &"CD".repeat(20),
        ])
        .unwrap();
    let x509 = refused(
        &server,
        &["device", "update", "cli-upd-x509", "--renew-key", "both"],
        "an X.509 device has no keys to renew",
    );
    assert!(x509.contains("selfSigned"), "{x509}");
    let missing = refused(
        &server,
        &["device", "update", "cli-nobody", "--status", "disabled"],
        "an unknown device is an error",
    );
    assert!(missing.contains("DeviceNotFound"), "{missing}");
}
