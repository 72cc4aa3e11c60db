"""The unmodified Event Hubs consumer (azure-eventhub 5.15.1) reads Shoal's built-in endpoint over
AMQP/TLS on port 5671.

Devices send telemetry with the unmodified device SDK over MQTT; the consumer, given the
`eventhub_connection_string` from endpoints.json and the development CA as `connection_verify`,
reads it back: hub and partition properties, every starting position, owner levels, consumer
groups, and authorization failures. Every receive runs on a thread and is bounded by a deadline,
so a wrong byte on the wire shows up as a failed assertion, never as a hung suite.
"""

import base64
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import requests
from azure.eventhub import EventHubConsumerClient
from azure.eventhub.exceptions import AuthenticationError, EventHubError
from azure.iot.device import IoTHubDeviceClient, Message
from azure.iot.device.exceptions import CredentialError
from azure.iot.hub import IoTHubRegistryManager

from shoal_harness import Shoal, free_port, partition_of

PARTITIONS = 4
DEADLINE_SECONDS = 30


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def registry(shoal):
    return IoTHubRegistryManager.from_connection_string(shoal.service_connection_string)


@pytest.fixture(scope="module")
def ca_text(shoal):
    with open(shoal.ca_path) as file:
        return file.read()


def device_in(partition):
    """A fresh device id that Shoal places in `partition`."""
    while True:
        device_id = unique("eh")
        if partition_of(device_id, PARTITIONS) == partition:
            return device_id


def send(shoal, registry, ca_text, device_id, messages):
    """Registers `device_id` and sends `messages` (Message objects or text) through the device SDK."""
    device = registry.create_device_with_sas(device_id, None, None, "enabled")
    key = device.authentication.symmetric_key.primary_key
    client = connected_device(shoal, ca_text, device_id, key)
    try:
        for message in messages:
            client.send_message(message)
    finally:
        client.shutdown()
    return device


def connected_device(shoal, ca_text, device_id, key):
    """A connected device client. A device created a moment ago may be refused until the
    registry's change reaches every shard (tens of milliseconds), so refusals are retried
    briefly."""
    deadline = time.time() + 5
    while True:
        client = IoTHubDeviceClient.create_from_connection_string(
            shoal.device_connection_string(device_id, key),
            server_verification_cert=ca_text,
            connection_retry=False,
        )
        try:
            client.connect()
            return client
        except CredentialError:
            client.shutdown()
            if time.time() > deadline:
                raise
            time.sleep(0.1)


def consumer(shoal, consumer_group="$Default", connection_string=None, **kwargs):
    return EventHubConsumerClient.from_connection_string(
        connection_string or shoal.eventhub_connection_string,
        consumer_group=consumer_group,
        connection_verify=shoal.ca_path,
        **kwargs,
    )


class Receiving:
    """Runs `client.receive` on a thread and collects events and errors until closed."""

    def __init__(self, client, **receive_kwargs):
        self.client = client
        self.events = []
        self.errors = []
        self.contexts = []
        self.lock = threading.RLock()

        def on_event(context, event):
            if event is None:
                return
            with self.lock:
                self.events.append((context.partition_id, event))
                self.contexts.append(context)

        def on_error(context, error):
            with self.lock:
                self.errors.append(error)

        self.thread = threading.Thread(
            target=self.client.receive,
            kwargs=dict(on_event=on_event, on_error=on_error, max_wait_time=1, **receive_kwargs),
            daemon=True,
        )
        self.thread.start()

    def wait_for(self, predicate, seconds=DEADLINE_SECONDS):
        deadline = time.time() + seconds
        while time.time() < deadline:
            with self.lock:
                if predicate(self):
                    return True
            time.sleep(0.05)
        return False

    def of(self, device_id):
        with self.lock:
            return [
                event
                for _, event in self.events
                if event.system_properties.get(b"iothub-connection-device-id") == device_id.encode()
            ]

    def close(self):
        self.client.close()
        self.thread.join(DEADLINE_SECONDS)
        assert not self.thread.is_alive(), "receive did not return after close"


def receive_all(shoal, device_id, count, **receive_kwargs):
    """Receives until `count` events of `device_id` arrived; returns them."""
    receiving = Receiving(consumer(shoal), **receive_kwargs)
    try:
        assert receiving.wait_for(lambda r: len(r.of(device_id)) >= count), (
            len(receiving.of(device_id)),
            receiving.errors,
        )
        time.sleep(0.3)  # nothing more may follow
        return receiving.of(device_id)
    finally:
        receiving.close()


@pytest.fixture(scope="module")
def partition_one(shoal, registry, ca_text):
    """Five messages of one device in partition 1, with every property a device can set."""
    device_id = device_in(1)
    messages = []
    for index in range(5):
        message = Message(f'{{"index": {index}}}', message_id=f"mid-{index}")
        message.correlation_id = f"cid-{index}"
        message.content_type = "application/json"
        message.content_encoding = "utf-8"
        message.custom_properties["index"] = str(index)
        message.custom_properties["unicode"] = "größe ✓"
        messages.append(message)
    device = send(shoal, registry, ca_text, device_id, messages)
    events = receive_all(shoal, device_id, 5, partition_id="1", starting_position="-1")
    return device, events


def test_event_hub_properties_name_the_hub_and_its_partitions(shoal):
    with consumer(shoal) as client:
        properties = client.get_eventhub_properties()
        assert client.get_partition_ids() == [str(p) for p in range(PARTITIONS)]
    assert properties["eventhub_name"] == shoal.endpoints["hub_name"]
    assert properties["partition_ids"] == [str(p) for p in range(PARTITIONS)]
    age = datetime.now(timezone.utc) - properties["created_at"]
    assert timedelta(0) <= age < timedelta(minutes=10)


def test_partition_properties_agree_with_the_events_in_the_log(shoal, partition_one):
    _, events = partition_one
    with consumer(shoal) as client:
        properties = client.get_partition_properties("1")
    # Other tests may have added to partition 1 since; read it whole to compare.
    everything = receive_all_partition(shoal, "1")
    last = everything[-1]
    assert properties["id"] == "1"
    assert properties["beginning_sequence_number"] == 0
    assert properties["last_enqueued_sequence_number"] == last.sequence_number
    assert properties["last_enqueued_offset"] == last.offset
    assert properties["last_enqueued_time_utc"] == last.enqueued_time
    assert properties["is_empty"] is False
    assert [event.sequence_number for event in everything] == list(range(len(everything)))
    assert events[-1].sequence_number <= last.sequence_number


def receive_all_partition(shoal, partition):
    """Every event in `partition` now, by its partition properties."""
    with consumer(shoal) as client:
        last = client.get_partition_properties(partition)["last_enqueued_sequence_number"]
    receiving = Receiving(consumer(shoal), partition_id=partition, starting_position="-1")
    try:
        assert receiving.wait_for(lambda r: len(r.events) >= last + 1), receiving.errors
        return [event for _, event in receiving.events]
    finally:
        receiving.close()


def test_events_carry_body_application_and_system_properties(partition_one):
    device, events = partition_one
    assert [event.body_as_str() for event in events] == [f'{{"index": {i}}}' for i in range(5)]
    first = events[0]
    assert first.body_as_json() == {"index": 0}
    assert first.properties == {b"index": b"0", b"unicode": "größe ✓".encode()}
    assert first.message_id == "mid-0"
    assert first.correlation_id == "cid-0"
    assert first.content_type == "application/json"
    system = first.system_properties
    assert system[b"iothub-connection-device-id"] == device.device_id.encode()
    assert system[b"iothub-connection-auth-generation-id"] == device.generation_id.encode()
    assert b'"scope":"device"' in system[b"iothub-connection-auth-method"]
    assert system[b"iothub-message-source"] == b"Telemetry"
    assert system[b"content-encoding"] == b"utf-8"
    assert system[b"message-id"] == b"mid-0"
    enqueued_ms = system[b"iothub-enqueuedtime"]
    assert isinstance(enqueued_ms, int)
    assert first.enqueued_time == datetime.fromtimestamp(enqueued_ms / 1000, timezone.utc)
    assert abs(datetime.now(timezone.utc) - first.enqueued_time) < timedelta(minutes=10)
    sequence_numbers = [event.sequence_number for event in events]
    assert sequence_numbers == list(range(sequence_numbers[0], sequence_numbers[0] + 5))
    offsets = [int(event.offset) for event in events]
    assert offsets == sorted(set(offsets)), "offsets are distinct decimal strings that increase"
    assert all(event.partition_key is None for event in events)


def test_receiving_from_all_partitions_gets_every_device_in_every_partition(
    shoal, registry, ca_text
):
    devices = [device_in(partition) for partition in range(PARTITIONS)]
    for device_id in devices:
        send(shoal, registry, ca_text, device_id, [f"from {device_id} #{i}" for i in range(2)])
    receiving = Receiving(consumer(shoal), starting_position="-1")
    try:
        assert receiving.wait_for(lambda r: all(len(r.of(d)) >= 2 for d in devices)), (
            [len(receiving.of(d)) for d in devices],
            receiving.errors,
        )
        partitions = {
            context.partition_id
            for context, (_, event) in zip(receiving.contexts, receiving.events)
            if event.system_properties[b"iothub-connection-device-id"].decode() in devices
        }
    finally:
        receiving.close()
    assert partitions == {str(p) for p in range(PARTITIONS)}
    for device_id in devices:
        assert [e.body_as_str() for e in receiving.of(device_id)] == [
            f"from {device_id} #{i}" for i in range(2)
        ]
    assert receiving.errors == []


def events_of_partition_two(shoal, registry, ca_text, count=6):
    device_id = device_in(2)
    send(shoal, registry, ca_text, device_id, [f"p2 #{i}" for i in range(count)])
    return device_id, receive_all(shoal, device_id, count, partition_id="2", starting_position="-1")


def test_a_receiver_starts_after_an_offset_or_at_it_when_inclusive(shoal, registry, ca_text):
    device_id, events = events_of_partition_two(shoal, registry, ca_text)
    middle = events[2]
    after = receive_all(shoal, device_id, 3, partition_id="2", starting_position=middle.offset)
    assert [e.sequence_number for e in after] == [e.sequence_number for e in events[3:]]
    at = receive_all(
        shoal,
        device_id,
        4,
        partition_id="2",
        starting_position=middle.offset,
        starting_position_inclusive=True,
    )
    assert [e.sequence_number for e in at] == [e.sequence_number for e in events[2:]]


def test_a_receiver_starts_after_a_sequence_number_or_at_it_when_inclusive(
    shoal, registry, ca_text
):
    device_id, events = events_of_partition_two(shoal, registry, ca_text)
    middle = events[3].sequence_number
    after = receive_all(shoal, device_id, 2, partition_id="2", starting_position=middle)
    assert [e.sequence_number for e in after] == [middle + 1, middle + 2]
    at = receive_all(
        shoal,
        device_id,
        3,
        partition_id="2",
        starting_position=middle,
        starting_position_inclusive=True,
    )
    assert [e.sequence_number for e in at] == [middle, middle + 1, middle + 2]


def test_a_receiver_starts_after_an_enqueued_time(shoal, registry, ca_text):
    device_id, events = events_of_partition_two(shoal, registry, ca_text)
    since = events[1].enqueued_time
    expected = [e.sequence_number for e in events if e.enqueued_time > since]
    assert expected, "the device's messages were enqueued over more than one millisecond"
    later = receive_all(shoal, device_id, len(expected), partition_id="2", starting_position=since)
    assert [e.sequence_number for e in later] == expected


def test_latest_delivers_only_messages_sent_after_the_receiver_started(shoal, registry, ca_text):
    device_id = device_in(3)
    device = send(shoal, registry, ca_text, device_id, ["before the receiver"])
    key = device.authentication.symmetric_key.primary_key
    receiving = Receiving(consumer(shoal), partition_id="3", starting_position="@latest")
    try:
        # The receiver is attached once it has reported an (empty) wait.
        time.sleep(3)
        client = connected_device(shoal, ca_text, device_id, key)
        client.send_message("after the receiver")
        client.shutdown()
        assert receiving.wait_for(lambda r: len(r.of(device_id)) >= 1), receiving.errors
        time.sleep(0.3)
        assert [e.body_as_str() for e in receiving.of(device_id)] == ["after the receiver"]
    finally:
        receiving.close()


def test_tracking_last_enqueued_event_properties_reports_the_partition_end(
    shoal, registry, ca_text
):
    device_id = device_in(0)
    send(shoal, registry, ca_text, device_id, [f"tracked #{i}" for i in range(3)])
    receiving = Receiving(
        consumer(shoal),
        partition_id="0",
        starting_position="-1",
        track_last_enqueued_event_properties=True,
    )
    try:
        assert receiving.wait_for(lambda r: len(r.of(device_id)) >= 3), receiving.errors
        last_properties = receiving.contexts[-1].last_enqueued_event_properties
    finally:
        receiving.close()
    with consumer(shoal) as client:
        partition = client.get_partition_properties("0")
    assert last_properties["sequence_number"] == partition["last_enqueued_sequence_number"]
    assert last_properties["offset"] == partition["last_enqueued_offset"]
    assert last_properties["enqueued_time"] == partition["last_enqueued_time_utc"]
    assert abs(datetime.now(timezone.utc) - last_properties["retrieval_time"]) < timedelta(minutes=1)


def test_a_higher_owner_level_takes_the_partition_and_a_lower_one_is_refused(
    shoal, registry, ca_text
):
    device_id = device_in(3)
    send(shoal, registry, ca_text, device_id, ["owned"])

    def reader(owner_level):
        return Receiving(
            consumer(shoal), partition_id="3", starting_position="-1", owner_level=owner_level
        )

    first = reader(1)
    try:
        assert first.wait_for(lambda r: r.of(device_id)), first.errors
        second = reader(2)
        try:
            assert second.wait_for(lambda r: r.of(device_id)), second.errors
            assert first.wait_for(lambda r: r.errors), "the lower owner level kept reading"
            assert "amqp:link:stolen" in str(first.errors[0]), first.errors[0]
            third = reader(1)
            try:
                assert third.wait_for(lambda r: r.errors), "a lower owner level was let in"
                assert "owner level (epoch) 2" in str(third.errors[0]), third.errors[0]
                assert third.events == []
            finally:
                third.close()
            assert second.errors == []
        finally:
            second.close()
    finally:
        first.close()


def test_an_unknown_consumer_group_is_a_clear_error(shoal):
    receiving = Receiving(
        consumer(shoal, consumer_group="no-such-group", retry_total=0),
        partition_id="0",
        starting_position="-1",
    )
    try:
        assert receiving.wait_for(lambda r: r.errors), "no error for an unknown consumer group"
    finally:
        receiving.close()
    text = str(receiving.errors[0])
    assert "not-found" in text and "no-such-group" in text, text
    assert receiving.events == []


def test_a_wrong_key_is_an_authentication_error(shoal):
    wrong = base64.b64encode(b"w" * 32).decode()
    parts = [
        f"SharedAccessKey={wrong}" if part.startswith("SharedAccessKey=") else part
        for part in shoal.eventhub_connection_string.split(";")
    ]
    with consumer(shoal, connection_string=";".join(parts), retry_total=0) as client:
        with pytest.raises(AuthenticationError) as raised:
            client.get_eventhub_properties()
    assert "401" in str(raised.value), raised.value


def create_consumer_group(shoal, registry, prefix):
    """Creates a uniquely named consumer group over REST; returns its name and a function
    that deletes it."""
    group = unique(prefix)
    token = registry.protocol.config.credentials.signed_session().headers["Authorization"]
    url = (
        f"{shoal.endpoints['rest_base_url']}/eventHubEndpoints/events/consumerGroups/{group}"
        "?api-version=2021-04-12"
    )
    assert requests.put(url, headers={"Authorization": token}).status_code == 200
    return group, lambda: requests.delete(url, headers={"Authorization": token})


def test_a_consumer_group_created_over_rest_can_be_read(shoal, registry, ca_text):
    group, _ = create_consumer_group(shoal, registry, "group")
    device_id = device_in(1)
    send(shoal, registry, ca_text, device_id, ["for the new group"])
    receiving = Receiving(
        consumer(shoal, consumer_group=group), partition_id="1", starting_position="-1"
    )
    try:
        assert receiving.wait_for(lambda r: len(r.of(device_id)) >= 1), receiving.errors
    finally:
        receiving.close()
    assert receiving.errors == []
    assert [e.body_as_str() for e in receiving.of(device_id)] == ["for the new group"]


def test_deleting_a_consumer_group_detaches_its_receivers(shoal, registry, ca_text):
    # Setup: a receiver reading a group created over REST. Expectation: deleting the group
    # ends the receiver with an error that names the group, and the group's events are not
    # delivered any more; other groups read on.
    group, delete_group = create_consumer_group(shoal, registry, "doomed")
    device_id = device_in(1)
    send(shoal, registry, ca_text, device_id, ["before the delete"])
    # Without retries the client reports the detach instead of re-attaching (refused too).
    receiving = Receiving(
        consumer(shoal, consumer_group=group, retry_total=0),
        partition_id="1",
        starting_position="-1",
    )
    try:
        assert receiving.wait_for(lambda r: len(r.of(device_id)) >= 1), receiving.errors
        assert delete_group().status_code in (200, 204)
        assert receiving.wait_for(lambda r: r.errors), "the receiver of a deleted group kept reading"
        message = str(receiving.errors[0])
        assert group.lower() in message.lower(), message
        assert "not-found" in message and "was deleted" in message, message
        later_device = device_in(1)
        send(shoal, registry, ca_text, later_device, ["after the delete"])
        time.sleep(1)
        assert receiving.of(later_device) == []
        assert [e.body_as_str() for e in receiving.of(device_id)] == ["before the delete"]
    finally:
        receiving.close()


def test_the_emulator_connection_string_reads_over_plain_amqp(tmp_path):
    plain_port = free_port()
    server = Shoal(
        tmp_path / "emulator",
        mqtt_port=free_port(),
        amqp_port=free_port(),
        environment={"SHOAL_LISTENERS_AMQP_PLAIN_PORT": str(plain_port)},
    ).start()
    try:
        assert server.endpoints["amqp_plain_port"] == plain_port
        connection_string = server.eventhub_connection_string.replace(
            "Endpoint=sb://localhost/", f"Endpoint=sb://localhost:{plain_port}/"
        ) + ";UseDevelopmentEmulator=true"
        client = EventHubConsumerClient.from_connection_string(
            connection_string, consumer_group="$Default", retry_total=0
        )
        with client:
            properties = client.get_eventhub_properties()
            partition = client.get_partition_properties("0")
        assert properties["partition_ids"] == [str(p) for p in range(PARTITIONS)]
        assert partition["is_empty"] is True
        receiving = Receiving(
            EventHubConsumerClient.from_connection_string(
                connection_string, consumer_group="$Default", retry_total=0
            ),
            partition_id="0",
            starting_position="-1",
        )
        time.sleep(2)
        receiving.close()
        assert receiving.errors == []
    finally:
        assert server.stop() == 0, server.log()


def test_event_hub_errors_name_the_missing_partition(shoal):
    with consumer(shoal, retry_total=0) as client:
        with pytest.raises(EventHubError) as raised:
            client.get_partition_properties("9")
    assert "partition" in str(raised.value).lower(), raised.value
