"""The unmodified azure-eventhub 5.15.1 client against the sans-IO connection, through the
`eventhub_stub` example over plain TCP (`UseDevelopmentEmulator=true`).

Setup: the stub serves hub `hub` with 4 partitions of 5 generated events each (sequence
numbers 0-4, offsets 0, 512, ... as strings, device `dev<partition>`). Each test drives one
client feature and checks what the client surfaces, so a wrong byte on the wire shows up as a
client error, a hang (bounded by the test's deadline) or a wrong value.
"""

import threading
import time

import pytest
from azure.eventhub import EventHubConsumerClient
from azure.eventhub.exceptions import AuthenticationError

from conftest import EVENTS, PARTITIONS, connection_string

DEADLINE_S = 30


def client(port, **kwargs):
    return EventHubConsumerClient.from_connection_string(
        connection_string(port, **kwargs), consumer_group="$Default", retry_total=0
    )


class Receiving:
    """Runs `client.receive` on a thread and collects events and errors."""

    def __init__(self, port, **receive_kwargs):
        self.client = client(port)
        self.events = []
        self.errors = []
        self.contexts = []
        self.lock = threading.Lock()

        def on_event(context, event):
            with self.lock:
                self.events.append((context.partition_id, event))
                self.contexts.append(context)

        def on_error(context, error):
            with self.lock:
                self.errors.append(error)

        self.thread = threading.Thread(
            target=self.client.receive,
            kwargs=dict(on_event=on_event, on_error=on_error, **receive_kwargs),
            daemon=True,
        )
        self.thread.start()

    def wait_for(self, predicate):
        deadline = time.time() + DEADLINE_S
        while time.time() < deadline:
            with self.lock:
                if predicate(self):
                    return True
            time.sleep(0.05)
        return False

    def close(self):
        self.client.close()
        self.thread.join(DEADLINE_S)


def test_get_eventhub_properties(stub):
    with client(stub) as c:
        properties = c.get_eventhub_properties()
    assert properties["eventhub_name"] == "hub"
    assert properties["partition_ids"] == [str(p) for p in range(PARTITIONS)]
    assert properties["created_at"].year >= 2024


def test_get_partition_properties(stub):
    with client(stub) as c:
        properties = c.get_partition_properties("2")
    assert properties["id"] == "2"
    assert properties["beginning_sequence_number"] == 0
    assert properties["last_enqueued_sequence_number"] == EVENTS - 1
    assert properties["last_enqueued_offset"] == str((EVENTS - 1) * 512)
    assert properties["is_empty"] is False
    assert properties["last_enqueued_time_utc"].tzinfo is not None


def test_receive_one_partition_from_start(stub):
    receiving = Receiving(stub, partition_id="1", starting_position="-1")
    try:
        assert receiving.wait_for(lambda r: len(r.events) >= EVENTS), receiving.errors
    finally:
        receiving.close()
    events = [event for _, event in receiving.events]
    assert [e.sequence_number for e in events] == list(range(EVENTS))
    assert [e.offset for e in events] == [str(i * 512) for i in range(EVENTS)]
    first = events[0]
    assert first.body_as_json() == {"partition": 1, "index": 0}
    assert first.properties == {b"source": b"stub"}
    assert first.content_type == "application/json"
    assert first.enqueued_time.tzinfo is not None
    system = first.system_properties
    assert system[b"iothub-connection-device-id"] == b"dev1"
    assert system[b"iothub-message-source"] == b"Telemetry"
    assert isinstance(system[b"iothub-enqueuedtime"], int)
    assert system[b"message-id"] == b"msg-1-0"
    assert receiving.errors == []


def test_receive_all_partitions_from_start(stub):
    receiving = Receiving(stub, starting_position="-1")
    try:
        assert receiving.wait_for(lambda r: len(r.events) >= PARTITIONS * EVENTS), (
            len(receiving.events),
            receiving.errors,
        )
    finally:
        receiving.close()
    by_partition = {}
    for partition, event in receiving.events:
        by_partition.setdefault(partition, []).append(event.sequence_number)
    assert sorted(by_partition) == [str(p) for p in range(PARTITIONS)]
    for sequence_numbers in by_partition.values():
        assert sequence_numbers == list(range(EVENTS))


@pytest.mark.parametrize("inclusive, first", [(True, 2), (False, 3)])
def test_receive_from_sequence_number(stub, inclusive, first):
    receiving = Receiving(
        stub,
        partition_id="0",
        starting_position=2,
        starting_position_inclusive=inclusive,
    )
    try:
        assert receiving.wait_for(lambda r: len(r.events) >= EVENTS - first), receiving.errors
        time.sleep(0.3)  # Nothing more may arrive.
    finally:
        receiving.close()
    assert [e.sequence_number for _, e in receiving.events] == list(range(first, EVENTS))


def test_receive_from_offset_exclusive(stub):
    receiving = Receiving(stub, partition_id="3", starting_position="1024")
    try:
        assert receiving.wait_for(lambda r: len(r.events) >= 2), receiving.errors
    finally:
        receiving.close()
    assert [e.offset for _, e in receiving.events] == ["1536", "2048"]


def test_track_last_enqueued_event_properties(stub):
    receiving = Receiving(
        stub,
        partition_id="0",
        starting_position="-1",
        track_last_enqueued_event_properties=True,
    )
    try:
        assert receiving.wait_for(lambda r: len(r.events) >= 1), receiving.errors
        with receiving.lock:
            last = receiving.contexts[0].last_enqueued_event_properties
    finally:
        receiving.close()
    assert last["sequence_number"] == EVENTS - 1
    assert last["offset"] == str((EVENTS - 1) * 512)
    assert last["enqueued_time"].tzinfo is not None
    assert last["retrieval_time"].tzinfo is not None


def test_owner_level_takeover_steals_the_partition(stub):
    first = Receiving(stub, partition_id="2", starting_position="-1", owner_level=1)
    second = None
    try:
        assert first.wait_for(lambda r: len(r.events) >= EVENTS), first.errors
        second = Receiving(stub, partition_id="2", starting_position="-1", owner_level=2)
        assert second.wait_for(lambda r: len(r.events) >= EVENTS), second.errors
        assert first.wait_for(lambda r: r.errors), "the lower epoch was not kicked out"
    finally:
        first.close()
        if second:
            second.close()
    assert "link:stolen" in str(first.errors[0]), repr(first.errors[0])
    assert second.errors == []


def test_lower_owner_level_is_refused(stub):
    holder = Receiving(stub, partition_id="3", starting_position="-1", owner_level=10)
    late = None
    try:
        assert holder.wait_for(lambda r: len(r.events) >= EVENTS), holder.errors
        late = Receiving(stub, partition_id="3", starting_position="-1", owner_level=5)
        assert late.wait_for(lambda r: r.errors), "the lower epoch was let in"
    finally:
        holder.close()
        if late:
            late.close()
    assert "link:stolen" in str(late.errors[0]), repr(late.errors[0])
    assert late.events == []


def test_wrong_key_is_an_authentication_error(stub):
    with client(stub, key="d3Jvbmcta2V5") as c:
        with pytest.raises(AuthenticationError) as raised:
            c.get_eventhub_properties()
    assert "401" in str(raised.value)
