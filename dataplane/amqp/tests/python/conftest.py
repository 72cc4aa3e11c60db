"""Starts the `eventhub_stub` example on a free port for the azure-eventhub client tests.

The stub binary comes from `$EVENTHUB_STUB` if set, otherwise it is built with cargo (using
`$CARGO_TARGET_DIR` when set).
"""

import os
import subprocess
from pathlib import Path

import pytest

CRATE = Path(__file__).resolve().parents[2]
KEY_NAME = "RootManageSharedAccessKey"
KEY = "c2VjcmV0LWtleS1mb3ItdGVzdHM="
HUB = "hub"
PARTITIONS = 4
EVENTS = 5


def stub_binary() -> Path:
    if os.environ.get("EVENTHUB_STUB"):
        return Path(os.environ["EVENTHUB_STUB"])
    subprocess.run(
        ["cargo", "build", "-j", "2", "-p", "dataplane-amqp", "--example", "eventhub_stub"],
        cwd=CRATE,
        check=True,
    )
    target = Path(os.environ.get("CARGO_TARGET_DIR", CRATE.parents[1] / "target"))
    return target / "debug" / "examples" / "eventhub_stub"


@pytest.fixture(scope="session")
def stub():
    process = subprocess.Popen(
        [
            str(stub_binary()),
            "--port", "0",
            "--hub", HUB,
            "--partitions", str(PARTITIONS),
            "--events", str(EVENTS),
            "--key-name", KEY_NAME,
            "--key", KEY,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline().split()
    assert line[:1] == ["LISTENING"], line
    port = int(line[1])
    yield port
    process.kill()
    process.wait()


def connection_string(port: int, key: str = KEY) -> str:
    return (
        f"Endpoint=sb://localhost:{port};SharedAccessKeyName={KEY_NAME};"
        f"SharedAccessKey={key};EntityPath={HUB};UseDevelopmentEmulator=true"
    )
