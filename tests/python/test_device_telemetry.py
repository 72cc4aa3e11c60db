"""The unmodified device SDK (azure-iot-device 2.14.0) streams telemetry into Shoal over MQTT/TLS.

Each test registers identities with the service SDK, connects real device clients to port 8883
trusting the development CA, and checks what landed in the partition logs with `shoal events
tail` (the records' properties, partitions and sequence numbers), or how the SDK was refused.
"""

import base64
import threading
import time
import uuid
from datetime import datetime, timezone

import pytest
from azure.iot.device import IoTHubDeviceClient, IoTHubModuleClient, Message
from azure.iot.device.exceptions import ClientError, CredentialError, ConnectionFailedError
from azure.iot.hub import IoTHubRegistryManager

from shoal_harness import partition_of, read_events


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def registry(shoal):
    return IoTHubRegistryManager.from_connection_string(shoal.service_connection_string)


@pytest.fixture(scope="module")
def ca(shoal):
    with open(shoal.ca_path) as file:
        return file.read()


def new_device(shoal, registry, status="enabled"):
    device_id = unique("dev")
    device = registry.create_device_with_sas(device_id, None, None, status)
    key = device.authentication.symmetric_key.primary_key
    return device, shoal.device_connection_string(device_id, key)


def events_of(shoal, device_id):
    return [
        event
        for event in read_events(shoal)
        if event["system_properties"].get("iothub-connection-device-id") == device_id
    ]


def test_messages_carry_every_system_property_and_custom_properties(shoal, registry, ca):
    device, connection_string = new_device(shoal, registry)
    client = IoTHubDeviceClient.create_from_connection_string(
        connection_string, server_verification_cert=ca
    )
    client.connect()
    message = Message('{"temperature": 21.5}', message_id="mid-1")
    message.correlation_id = "cid-1"
    message.user_id = "uid-1"
    message.content_type = "application/json"
    message.content_encoding = "utf-8"
    message.expiry_time_utc = datetime(2030, 1, 1, tzinfo=timezone.utc)
    message.custom_properties["a b"] = "x/y&z=1"
    message.custom_properties["unicode"] = "größe ✓"
    message.custom_properties["empty"] = ""
    before_ms = time.time() * 1000
    client.send_message(message)
    client.send_message("plain text body")
    client.shutdown()

    events = events_of(shoal, device.device_id)
    assert len(events) == 2
    first, second = events
    system = first["system_properties"]
    assert system["message-id"] == "mid-1"
    assert system["correlation-id"] == "cid-1"
    assert system["user-id"] == "uid-1"
    assert system["content-type"] == "application/json"
    assert system["content-encoding"] == "utf-8"
    assert system["absolute-expiry-time"] == "2030-01-01T00:00:00.000Z"
    assert system["iothub-connection-device-id"] == device.device_id
    assert "iothub-connection-module-id" not in system
    assert system["iothub-connection-auth-generation-id"] == device.generation_id
    assert '"scope":"device"' in system["iothub-connection-auth-method"]
    assert '"type":"sas"' in system["iothub-connection-auth-method"]
    assert system["iothub-message-source"] == "Telemetry"
    assert before_ms - 1000 <= first["enqueued_time_ms"] <= time.time() * 1000 + 1000
    assert first["properties"] == {"a b": "x/y&z=1", "empty": "", "unicode": "größe ✓"}
    assert first["body"] == '{"temperature": 21.5}'
    assert second["body"] == "plain text body"
    assert second["properties"] == {}
    assert second["partition"] == first["partition"] == partition_of(device.device_id, 4)
    assert second["sequence_number"] == first["sequence_number"] + 1
    assert int(second["offset"]) > int(first["offset"])


def test_a_module_identity_sends_with_its_own_key(shoal, registry, ca):
    device, _ = new_device(shoal, registry)
    module = registry.create_module_with_sas(device.device_id, "mod1", None, None, None)
    connection_string = shoal.device_connection_string(
        device.device_id, module.authentication.symmetric_key.primary_key, module_id="mod1"
    )
    client = IoTHubModuleClient.create_from_connection_string(
        connection_string, server_verification_cert=ca
    )
    client.connect()
    client.send_message("from a module")
    client.shutdown()
    [event] = events_of(shoal, device.device_id)
    assert event["system_properties"]["iothub-connection-module-id"] == "mod1"
    assert '"scope":"module"' in event["system_properties"]["iothub-connection-auth-method"]
    assert event["system_properties"]["iothub-connection-auth-generation-id"] == module.generation_id
    assert event["body"] == "from a module"


def test_connection_state_reaches_the_registry(shoal, registry, ca):
    device, connection_string = new_device(shoal, registry)
    client = IoTHubDeviceClient.create_from_connection_string(
        connection_string, server_verification_cert=ca
    )
    client.connect()
    client.send_message("hello")
    deadline = time.time() + 10
    while registry.get_device(device.device_id).connection_state != "Connected":
        assert time.time() < deadline, "never reported Connected"
        time.sleep(0.2)
    assert registry.get_service_statistics().connected_device_count >= 1
    fetched = registry.get_device(device.device_id)
    assert fetched.last_activity_time.year > 2000
    client.shutdown()
    deadline = time.time() + 10
    while registry.get_device(device.device_id).connection_state != "Disconnected":
        assert time.time() < deadline, "never reported Disconnected"
        time.sleep(0.2)


def test_sas_renewal_reconnects_and_keeps_working(shoal, registry, ca):
    """The SDK renews its token 120 s before expiry by reconnecting with a new password."""
    device, connection_string = new_device(shoal, registry)
    client = IoTHubDeviceClient.create_from_connection_string(
        connection_string, server_verification_cert=ca, sastoken_ttl=125
    )
    states = []
    client.on_connection_state_change = lambda: states.append(client.connected)
    client.connect()
    sent = 0
    deadline = time.time() + 14
    while time.time() < deadline:
        client.send_message(f"renewal {sent}")
        sent += 1
        time.sleep(0.5)
    client.shutdown()
    assert False in states and states.count(True) >= 2, f"no reconnect happened: {states}"
    bodies = [event["body"] for event in events_of(shoal, device.device_id)]
    assert bodies == [f"renewal {index}" for index in range(sent)]


def test_wrong_key_disabled_and_unknown_devices_are_refused(shoal, registry, ca):
    device, _ = new_device(shoal, registry)
    wrong_key = base64.b64encode(b"w" * 32).decode()
    for connection_string in [
        shoal.device_connection_string(device.device_id, wrong_key),
        shoal.device_connection_string(unique("unknown"), wrong_key),
    ]:
        client = IoTHubDeviceClient.create_from_connection_string(
            connection_string, server_verification_cert=ca, connection_retry=False
        )
        with pytest.raises((CredentialError, ClientError, ConnectionFailedError)):
            client.connect()
        client.shutdown()

    disabled, connection_string = new_device(shoal, registry, status="disabled")
    client = IoTHubDeviceClient.create_from_connection_string(
        connection_string, server_verification_cert=ca, connection_retry=False
    )
    with pytest.raises((CredentialError, ClientError, ConnectionFailedError)):
        client.connect()
    client.shutdown()
    assert events_of(shoal, disabled.device_id) == []


def test_disabling_a_connected_device_closes_its_connection(shoal, registry, ca):
    device, connection_string = new_device(shoal, registry)
    client = IoTHubDeviceClient.create_from_connection_string(
        connection_string, server_verification_cert=ca, connection_retry=False
    )
    client.connect()
    client.send_message("before")
    current = registry.get_device(device.device_id)
    key = current.authentication.symmetric_key
    registry.update_device_with_sas(
        device.device_id, current.etag, key.primary_key, key.secondary_key, "disabled"
    )
    deadline = time.time() + 5
    while client.connected:
        assert time.time() < deadline, "the connection stayed open after disabling"
        time.sleep(0.1)
    client.shutdown()


def test_oversized_messages_are_refused(shoal, registry, ca):
    device, connection_string = new_device(shoal, registry)
    client = IoTHubDeviceClient.create_from_connection_string(
        connection_string, server_verification_cert=ca
    )
    client.connect()
    with pytest.raises(ValueError):
        client.send_message("x" * (256 * 1024 + 1))
    client.send_message("small")
    client.shutdown()
    assert [event["body"] for event in events_of(shoal, device.device_id)] == ["small"]


def test_thousand_messages_from_ten_devices_land_in_their_partitions(shoal, registry, ca):
    devices = [new_device(shoal, registry) for _ in range(10)]
    per_device = 100
    errors = []

    def stream(device, connection_string):
        try:
            client = IoTHubDeviceClient.create_from_connection_string(
                connection_string, server_verification_cert=ca
            )
            client.connect()
            for index in range(per_device):
                message = Message(f"{device.device_id} #{index}")
                message.custom_properties["index"] = str(index)
                client.send_message(message)
            client.shutdown()
        except Exception as error:  # reported below with the device
            errors.append((device.device_id, error))

    threads = [threading.Thread(target=stream, args=pair) for pair in devices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert not errors, errors

    events = read_events(shoal)
    by_partition = {}
    for event in events:
        by_partition.setdefault(event["partition"], []).append(event)
    for partition, partition_events in by_partition.items():
        sequence_numbers = [event["sequence_number"] for event in partition_events]
        assert sequence_numbers == list(range(sequence_numbers[0], sequence_numbers[0] + len(sequence_numbers)))
        offsets = [int(event["offset"]) for event in partition_events]
        assert offsets == sorted(offsets)
    for device, _ in devices:
        mine = [e for e in events if e["system_properties"].get("iothub-connection-device-id") == device.device_id]
        assert [e["body"] for e in mine] == [f"{device.device_id} #{i}" for i in range(per_device)]
        assert [e["properties"]["index"] for e in mine] == [str(i) for i in range(per_device)]
        assert {e["partition"] for e in mine} == {partition_of(device.device_id, 4)}


def test_plug_and_play_model_and_security_interface_are_stamped(shoal, registry, ca):
    """A device that declares a DTMI (through product_info) gets dt-dataschema on its telemetry;
    a security message carries iothub-interface-id."""
    device, connection_string = new_device(shoal, registry)
    model = "dtmi:com:example:Thermostat;1"
    client = IoTHubDeviceClient.create_from_connection_string(
        connection_string, server_verification_cert=ca, product_info=model
    )
    client.connect()
    client.send_message("reading")
    security = Message("audit")
    security.set_as_security_message()
    client.send_message(security)
    client.shutdown()
    reading, audit = events_of(shoal, device.device_id)
    assert reading["system_properties"]["dt-dataschema"] == model
    assert "iothub-interface-id" not in reading["system_properties"]
    assert audit["system_properties"]["iothub-interface-id"] == "urn:azureiot:Security:SecurityAgent:1"
