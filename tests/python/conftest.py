import os
import shutil

import pytest

from shoal_harness import Shoal


@pytest.fixture(scope="module")
def shoal(tmp_path_factory):
    """A server for the whole test module, on a fresh data directory."""
    server = Shoal(tmp_path_factory.mktemp("shoal") / "data").start()
    # Every official client trusts the development CA through these.
    os.environ["REQUESTS_CA_BUNDLE"] = server.ca_path
    os.environ["SSL_CERT_FILE"] = server.ca_path
    yield server
    code = server.stop()
    assert code == 0, f"shoal did not shut down cleanly (exit {code}):\n{server.log()}"
    # Its segments are preallocated; the log (beside the directory) is what stays.
    shutil.rmtree(server.data_dir, ignore_errors=True)
