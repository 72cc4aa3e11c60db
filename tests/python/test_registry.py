"""The unmodified IoT Hub service SDK (azure-iot-hub 2.7.0) manages identities on Shoal.

Each test drives IoTHubRegistryManager against a real server over HTTPS with the development
CA trusted through REQUESTS_CA_BUNDLE, and checks what the SDK returns or raises.
"""

import base64
import time
import uuid

import pytest
import requests
from azure.iot.hub import IoTHubRegistryManager
from azure.iot.hub.models import (
    AuthenticationMechanism,
    DeviceCapabilities,
    ExportImportDevice,
    SymmetricKey,
)
from msrest.exceptions import HttpOperationError

PRIMARY = base64.b64encode(b"p" * 32).decode()
SECONDARY = base64.b64encode(b"s" * 32).decode()
THUMB_1 = "A" * 40
THUMB_2 = "b" * 64


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def status_of(error):
    return error.response.status_code


@pytest.fixture(scope="module")
def registry(shoal):
    return IoTHubRegistryManager.from_connection_string(shoal.service_connection_string)


def test_create_get_update_delete_device_with_sas_keys(registry):
    device_id = unique("sas")
    created = registry.create_device_with_sas(device_id, PRIMARY, SECONDARY, "enabled")
    assert created.device_id == device_id
    assert created.authentication.type == "sas"
    assert created.authentication.symmetric_key.primary_key == PRIMARY
    assert created.authentication.symmetric_key.secondary_key == SECONDARY
    assert created.status == "enabled"
    assert created.connection_state == "Disconnected"
    assert created.etag and created.generation_id

    fetched = registry.get_device(device_id)
    assert fetched.etag == created.etag
    assert fetched.generation_id == created.generation_id

    updated = registry.update_device_with_sas(
        device_id, fetched.etag, PRIMARY, SECONDARY, "disabled"
    )
    assert updated.status == "disabled"
    assert updated.etag != created.etag
    assert updated.generation_id == created.generation_id
    assert updated.status_updated_time.year > 2000

    registry.delete_device(device_id)
    with pytest.raises(HttpOperationError) as raised:
        registry.get_device(device_id)
    assert status_of(raised.value) == 404
    assert "DeviceNotFound" in raised.value.response.text


def test_keys_are_generated_when_omitted(registry):
    device_id = unique("gen")
    created = registry.create_device_with_sas(device_id, None, None, "enabled")
    keys = created.authentication.symmetric_key
    assert len(base64.b64decode(keys.primary_key)) == 32
    assert len(base64.b64decode(keys.secondary_key)) == 32
    assert keys.primary_key != keys.secondary_key


def test_device_with_x509_thumbprints_and_with_ca(registry):
    device_id = unique("x509")
    created = registry.create_device_with_x509(device_id, THUMB_1, THUMB_2, "enabled")
    assert created.authentication.type == "selfSigned"
    assert created.authentication.x509_thumbprint.primary_thumbprint == THUMB_1
    assert created.authentication.x509_thumbprint.secondary_thumbprint == THUMB_2.upper()
    assert created.authentication.symmetric_key.primary_key is None

    ca_id = unique("ca")
    ca = registry.create_device_with_certificate_authority(ca_id, "enabled", iot_edge=True)
    assert ca.authentication.type == "certificateAuthority"
    assert ca.capabilities.iot_edge is True


def test_creating_an_existing_device_conflicts(registry):
    device_id = unique("dup")
    registry.create_device_with_sas(device_id, None, None, "enabled")
    with pytest.raises(HttpOperationError) as raised:
        registry.create_device_with_sas(device_id, None, None, "enabled")
    assert status_of(raised.value) == 409
    assert raised.value.response.json()["errorCode"] == 409001


def test_stale_etag_is_refused_and_nothing_changes(registry):
    device_id = unique("etag")
    created = registry.create_device_with_sas(device_id, PRIMARY, SECONDARY, "enabled")
    registry.update_device_with_sas(device_id, created.etag, PRIMARY, SECONDARY, "enabled")
    with pytest.raises(HttpOperationError) as raised:
        registry.update_device_with_sas(device_id, created.etag, PRIMARY, SECONDARY, "disabled")
    assert status_of(raised.value) == 412
    assert raised.value.response.headers["iothub-errorcode"] == "PreconditionFailed"
    assert registry.get_device(device_id).status == "enabled"
    with pytest.raises(HttpOperationError) as raised:
        registry.delete_device(device_id, etag=created.etag)
    assert status_of(raised.value) == 412
    current = registry.get_device(device_id)
    registry.delete_device(device_id, etag=current.etag)


def test_modules_are_created_listed_updated_and_deleted_with_their_device(registry):
    device_id = unique("mod")
    registry.create_device_with_sas(device_id, None, None, "enabled")
    first = registry.create_module_with_sas(device_id, "m1", None, PRIMARY, SECONDARY)
    assert first.module_id == "m1" and first.device_id == device_id
    assert first.authentication.symmetric_key.primary_key == PRIMARY
    registry.create_module_with_x509(device_id, "m2", "IotEdge", THUMB_1, None)
    modules = registry.get_modules(device_id)
    assert sorted(module.module_id for module in modules) == ["m1", "m2"]
    updated = registry.update_module_with_sas(
        device_id, "m1", "someone", first.etag, SECONDARY, PRIMARY
    )
    assert updated.managed_by == "someone"
    assert updated.authentication.symmetric_key.primary_key == SECONDARY
    registry.delete_module(device_id, "m2")
    assert [module.module_id for module in registry.get_modules(device_id)] == ["m1"]
    registry.delete_device(device_id)
    with pytest.raises(HttpOperationError) as raised:
        registry.get_module(device_id, "m1")
    assert status_of(raised.value) == 404
    with pytest.raises(HttpOperationError) as raised:
        registry.create_module_with_sas(unique("absent"), "m1", None, None, None)
    assert status_of(raised.value) == 404


def test_bulk_create_then_bulk_errors_are_reported_per_device(registry):
    prefix = unique("bulk")
    devices = [
        ExportImportDevice(
            id=f"{prefix}-{index}",
            import_mode="create",
            status="enabled",
            authentication=AuthenticationMechanism(
                type="sas", symmetric_key=SymmetricKey(primary_key=PRIMARY, secondary_key=SECONDARY)
            ),
            capabilities=DeviceCapabilities(iot_edge=False),
        )
        for index in range(20)
    ]
    result = registry.bulk_create_or_update_devices(devices)
    assert result.is_successful is True
    assert result.errors == []
    assert registry.get_device(f"{prefix}-7").authentication.symmetric_key.primary_key == PRIMARY

    again = [
        ExportImportDevice(id=f"{prefix}-0", import_mode="create"),
        ExportImportDevice(id=f"{prefix}-new", import_mode="create"),
        ExportImportDevice(id=f"{prefix}-1", import_mode="delete"),
    ]
    result = registry.bulk_create_or_update_devices(again)
    assert result.is_successful is False
    assert [(error.device_id, error.error_code) for error in result.errors] == [
        (f"{prefix}-0", "DeviceAlreadyExists")
    ]
    assert registry.get_device(f"{prefix}-new").status == "enabled"
    with pytest.raises(HttpOperationError):
        registry.get_device(f"{prefix}-1")


def test_bulk_create_or_update_of_a_new_module_keeps_the_given_keys(registry):
    device_id = unique("bulkmod")
    registry.create_device_with_sas(device_id, None, None, "enabled")
    sas = AuthenticationMechanism(
        type="sas", symmetric_key=SymmetricKey(primary_key=PRIMARY, secondary_key=SECONDARY)
    )
    result = registry.bulk_create_or_update_devices(
        [ExportImportDevice(id=device_id, module_id="m1", import_mode="createOrUpdate", authentication=sas)]
    )
    assert result.is_successful is True, result.errors
    module = registry.get_module(device_id, "m1")
    assert module.authentication.symmetric_key.primary_key == PRIMARY
    assert module.authentication.symmetric_key.secondary_key == SECONDARY


def test_get_devices_and_statistics_count_what_exists(registry):
    before = registry.get_device_registry_statistics()
    enabled_id, disabled_id = unique("stat"), unique("stat")
    registry.create_device_with_sas(enabled_id, None, None, "enabled")
    registry.create_device_with_sas(disabled_id, None, None, "disabled")
    after = registry.get_device_registry_statistics()
    assert after.total_device_count == before.total_device_count + 2
    assert after.enabled_device_count == before.enabled_device_count + 1
    assert after.disabled_device_count == before.disabled_device_count + 1
    assert registry.get_service_statistics().connected_device_count == 0
    listed = {device.device_id for device in registry.get_devices()}
    assert {enabled_id, disabled_id} <= listed
    assert len(registry.get_devices(max_number_of_devices=2)) == 2


def test_invalid_ids_and_malformed_bodies_get_400(registry, shoal):
    with pytest.raises(HttpOperationError) as raised:
        registry.create_device_with_sas("has/slash" + "x" * 3, None, None, "enabled")
    assert status_of(raised.value) in (400, 404)
    with pytest.raises(HttpOperationError) as raised:
        registry.create_device_with_sas("x" * 129, None, None, "enabled")
    assert status_of(raised.value) == 400
    assert "128" in raised.value.response.json()["message"]

    url = f"{shoal.endpoints['rest_base_url']}/devices/{unique('raw')}?api-version=2021-04-12"
    token = registry.protocol.config.credentials.signed_session().headers["Authorization"]
    headers = {"Authorization": token, "Content-Type": "application/json"}
    response = requests.put(url, data="{not json", headers=headers)
    assert response.status_code == 400
    assert response.json()["errorCode"] == 400004
    response = requests.put(url, data="x" * (2 << 20), headers=headers)
    assert response.status_code == 413
    response = requests.put(
        url, json={"authentication": {"type": "sas", "symmetricKey": {"primaryKey": "short"}}},
        headers=headers,
    )
    assert response.status_code == 400
    assert requests.get(url, headers=headers).status_code == 404  # nothing half-written


def test_wrong_key_expired_token_and_weak_policy_are_refused(shoal, registry):
    wrong = shoal.service_connection_string.rsplit("SharedAccessKey=", 1)[0] + (
        "SharedAccessKey=" + base64.b64encode(b"w" * 32).decode()
    )
    with pytest.raises(HttpOperationError) as raised:
        IoTHubRegistryManager.from_connection_string(wrong).get_devices()
    assert status_of(raised.value) == 401
    assert raised.value.response.headers["iothub-errorcode"] == "IotHubUnauthorizedAccess"

    token = registry.protocol.config.credentials.signed_session().headers["Authorization"]
    fields = dict(part.split("=", 1) for part in token.split(" ", 1)[1].split("&"))
    from azure.iot.hub.sastoken import SasToken  # the SDK's own signer, with an expired ttl

    expired = SasToken(
        shoal.endpoints["rest_base_url"].split("//", 1)[1],
        shoal.service_connection_string.rsplit("SharedAccessKey=", 1)[1],
        fields["skn"],
        ttl=-10,
    )
    response = requests.get(
        f"{shoal.endpoints['rest_base_url']}/devices?api-version=2021-04-12",
        headers={"Authorization": str(expired)},
    )
    assert response.status_code == 401
    assert "expired" in response.json()["message"]

    reader = IoTHubRegistryManager.from_connection_string(
        shoal.policy_connection_string("registryRead")
    )
    reader.get_devices()
    with pytest.raises(HttpOperationError) as raised:
        reader.create_device_with_sas(unique("ro"), None, None, "enabled")
    assert status_of(raised.value) == 401
    service = IoTHubRegistryManager.from_connection_string(shoal.policy_connection_string("service"))
    with pytest.raises(HttpOperationError) as raised:
        service.get_devices()
    assert status_of(raised.value) == 401


def test_devices_survive_a_restart(shoal, registry):
    device_id = unique("persist")
    created = registry.create_device_with_sas(device_id, PRIMARY, SECONDARY, "enabled")
    registry.create_module_with_sas(device_id, "m", None, None, None)
    shoal.restart()
    fresh = IoTHubRegistryManager.from_connection_string(shoal.service_connection_string)
    again = fresh.get_device(device_id)
    assert again.etag == created.etag
    assert again.authentication.symmetric_key.primary_key == PRIMARY
    assert [module.module_id for module in fresh.get_modules(device_id)] == ["m"]


def test_concurrent_creates_of_one_id_let_exactly_one_win(shoal, registry):
    import concurrent.futures

    device_id = unique("race")

    def create(_):
        try:
            registry.create_device_with_sas(device_id, None, None, "enabled")
            return 200
        except HttpOperationError as error:
            return status_of(error)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(create, range(8)))
    assert sorted(results) == [200] + [409] * 7


def test_consumer_groups_of_the_built_in_endpoint(shoal, registry):
    token = registry.protocol.config.credentials.signed_session().headers["Authorization"]
    base = f"{shoal.endpoints['rest_base_url']}/eventHubEndpoints/events"
    headers = {"Authorization": token}
    query = "?api-version=2021-04-12"
    properties = requests.get(base + query, headers=headers).json()
    assert properties["path"] == shoal.endpoints["hub_name"]
    assert properties["partitionIds"] == ["0", "1", "2", "3"]
    assert properties["consumerGroups"] == ["$Default"]
    assert properties["connectionString"].startswith("Endpoint=sb://localhost/;SharedAccessKeyName=service;")
    assert properties["connectionString"].endswith(f";EntityPath={shoal.endpoints['hub_name']}")

    assert requests.put(f"{base}/consumerGroups/analytics{query}", headers=headers).status_code == 200
    assert requests.put(f"{base}/consumerGroups/analytics{query}", headers=headers).status_code == 200
    names = [group["name"] for group in requests.get(f"{base}/consumerGroups{query}", headers=headers).json()]
    assert names == ["$Default", "analytics"]
    assert requests.put(f"{base}/consumerGroups/bad%20name{query}", headers=headers).status_code == 400
    assert requests.delete(f"{base}/consumerGroups/$Default{query}", headers=headers).status_code == 400
    assert requests.delete(f"{base}/consumerGroups/analytics{query}", headers=headers).status_code == 204
    assert requests.delete(f"{base}/consumerGroups/analytics{query}", headers=headers).status_code == 404

    reader = IoTHubRegistryManager.from_connection_string(shoal.policy_connection_string("registryRead"))
    weak = {"Authorization": reader.protocol.config.credentials.signed_session().headers["Authorization"]}
    assert requests.put(f"{base}/consumerGroups/nope{query}", headers=weak).status_code == 401
