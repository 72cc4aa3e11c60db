"""Starts the real `shoal` binary on a fresh data directory and tells tests how to reach it.

The binary is `$SHOAL_BIN`, else `target/debug/shoal` (tests/run.sh builds it). Each server gets
its own temporary data directory and a free HTTPS port; MQTT and AMQP use the ports the SDKs
hard-code (8883, 5671), so servers that need them run one at a time.
"""

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_SECONDS = 30


def shoal_binary():
    binary = os.environ.get("SHOAL_BIN") or str(REPO / "target" / "debug" / "shoal")
    if not Path(binary).exists():
        raise RuntimeError(f"{binary} does not exist: build it with `cargo build --bin shoal`")
    return binary


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Shoal:
    """One server process and its data directory."""

    def __init__(
        self,
        data_dir,
        https_port=None,
        mqtt_port=8883,
        amqp_port=5671,
        extra_args=(),
        environment=None,
    ):
        self.data_dir = Path(data_dir)
        self.https_port = https_port or free_port()
        self.mqtt_port = mqtt_port
        self.amqp_port = amqp_port
        self.extra_args = list(extra_args)
        # Small segments: the suites start many servers, each preallocating the segments of
        # its partitions, and a test never fills even one.
        segment_mib = os.environ.get("SHOAL_LOG_SEGMENT_MIB", "8")
        self.environment = {"SHOAL_LOG_SEGMENT_MIB": segment_mib, **(environment or {})}
        self.process = None
        self.endpoints = None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"

    def start(self):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        endpoints_path = self.data_dir / "endpoints.json"
        command = [
            shoal_binary(),
            "serve",
            "--data-dir", str(self.data_dir),
            "--https-port", str(self.https_port),
            "--mqtt-port", str(self.mqtt_port),
            "--amqp-port", str(self.amqp_port),
            *self.extra_args,
        ]
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.environment},
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"shoal exited with {self.process.returncode}:\n{self.log()}")
            if endpoints_path.exists():
                try:
                    endpoints = json.loads(endpoints_path.read_text())
                except json.JSONDecodeError:
                    endpoints = None  # written but not complete yet
                if endpoints and endpoints.get("pid") == self.process.pid:
                    self.endpoints = endpoints
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"shoal did not start within {STARTUP_TIMEOUT_SECONDS}s:\n{self.log()}")

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        return code

    def kill(self):
        return self.stop(sig=signal.SIGKILL)

    def restart(self):
        self.stop()
        return self.start()

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")[-8000:]
        except OSError:
            return ""

    @property
    def ca_path(self):
        return self.endpoints["ca_cert_path"]

    @property
    def hostname(self):
        return self.endpoints["hostname"]

    @property
    def service_connection_string(self):
        return self.endpoints["service_connection_string"]

    @property
    def eventhub_connection_string(self):
        return self.endpoints["eventhub_connection_string"]

    def policy_connection_string(self, policy):
        return self.endpoints["policies"][policy]

    def device_connection_string(self, device_id, key, module_id=None):
        module = f";ModuleId={module_id}" if module_id else ""
        return f"HostName={self.hostname};DeviceId={device_id}{module};SharedAccessKey={key}"


def partition_of(device_id, partition_count):
    """The partition of a device: FNV-1a (32-bit) of its id, as Shoal places devices."""
    value = 0x811C9DC5
    for byte in device_id.encode():
        value ^= byte
        value = (value * 0x01000193) & 0xFFFFFFFF
    return value % partition_count


def read_events(server, partition=None, start="earliest"):
    """Every committed record of the built-in endpoint, read with `shoal events tail`."""
    command = [
        shoal_binary(), "events", "tail",
        "--data-dir", str(server.data_dir),
        "--from", start,
        "--json", "--no-follow",
    ]
    if partition is not None:
        command += ["--partition", str(partition)]
    output = subprocess.run(command, check=True, capture_output=True, text=True, timeout=60)
    return [json.loads(line) for line in output.stdout.splitlines() if line.strip()]
