//! Devices and modules: `PUT/GET/DELETE /devices/{id}`, `GET /devices?top=`, bulk
//! `POST /devices`, and `/devices/{id}/modules[/{mid}]` (checklist R1-R10).

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use dataplane_wire::iothub::{validate_device_id, validate_module_id};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::{ApiState, json_body, precondition};
use crate::registry::hub::Permission;
use crate::registry::keys::{
    new_etag, new_generation_id, new_key, normalize_thumbprint, validate_key,
};
use crate::registry::model::{
    Authentication, DeviceRecord, ModuleRecord, RuntimeState, Status, format_time,
};
use crate::store::{Precondition, StoreError};

/// `GET /devices?top=` returns at most this many (IoT Hub's limit).
const LIST_COUNT_MAX: usize = 1000;
/// A bulk request holds at most this many identities (IoT Hub's limit).
const BULK_COUNT_MAX: usize = 100;
/// `statusReason` is at most this long.
const STATUS_REASON_CHARS_MAX: usize = 128;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SymmetricKeyBody {
    primary_key: Option<String>,
    secondary_key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ThumbprintBody {
    primary_thumbprint: Option<String>,
    secondary_thumbprint: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthenticationBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    symmetric_key: Option<SymmetricKeyBody>,
    x509_thumbprint: Option<ThumbprintBody>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CapabilitiesBody {
    iot_edge: Option<bool>,
}

/// The Device model as clients send it; unknown and read-only fields are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeviceBody {
    device_id: Option<String>,
    status: Option<String>,
    status_reason: Option<String>,
    authentication: Option<AuthenticationBody>,
    capabilities: Option<CapabilitiesBody>,
    device_scope: Option<String>,
    parent_scopes: Option<Vec<String>>,
}

/// The Module model as clients send it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModuleBody {
    module_id: Option<String>,
    device_id: Option<String>,
    managed_by: Option<String>,
    authentication: Option<AuthenticationBody>,
}

fn empty_to_none(value: Option<String>) -> Option<String> {
    value.filter(|value| !value.is_empty())
}

/// Builds credentials from a request, keeping existing keys the request leaves out.
fn authentication(
    body: Option<AuthenticationBody>,
    existing: Option<&Authentication>,
) -> Result<Authentication, ApiError> {
    let Some(body) = body else {
        return Ok(existing.cloned().unwrap_or_else(|| Authentication::Sas {
            primary_key: new_key(),
            secondary_key: new_key(),
        }));
    };
    let kind = match body.kind.as_deref() {
        Some(kind) => kind.to_owned(),
        None if body
            .x509_thumbprint
            .as_ref()
            .is_some_and(|thumbprint| thumbprint.primary_thumbprint.is_some()) =>
        {
            "selfSigned".to_owned()
        }
        None => "sas".to_owned(),
    };
    match kind.to_ascii_lowercase().as_str() {
        "sas" => {
            let keys = body.symmetric_key.unwrap_or_default();
            let (old_primary, old_secondary) = match existing {
                Some(Authentication::Sas {
                    primary_key,
                    secondary_key,
                }) => (Some(primary_key.clone()), Some(secondary_key.clone())),
                _ => (None, None),
            };
            let pick = |given: Option<String>, old: Option<String>| -> Result<String, ApiError> {
                match empty_to_none(given) {
                    Some(key) => {
                        validate_key(&key).map_err(ApiError::invalid)?;
                        Ok(key)
                    }
                    None => Ok(old.unwrap_or_else(new_key)),
                }
            };
            Ok(Authentication::Sas {
                primary_key: pick(keys.primary_key, old_primary)?,
                secondary_key: pick(keys.secondary_key, old_secondary)?,
            })
        }
        "selfsigned" => {
            let thumbprints = body.x509_thumbprint.unwrap_or_default();
            let primary = empty_to_none(thumbprints.primary_thumbprint).ok_or_else(|| {
                ApiError::invalid(
                    "Authentication type selfSigned needs x509Thumbprint.primaryThumbprint.",
                )
            })?;
            let secondary = empty_to_none(thumbprints.secondary_thumbprint)
                .map(|thumbprint| normalize_thumbprint(&thumbprint))
                .transpose()
                .map_err(ApiError::invalid)?;
            Ok(Authentication::SelfSigned {
                primary_thumbprint: normalize_thumbprint(&primary).map_err(ApiError::invalid)?,
                secondary_thumbprint: secondary,
            })
        }
        "certificateauthority" => Ok(Authentication::CertificateAuthority),
        "none" => Ok(Authentication::None),
        other => Err(ApiError::invalid(format!(
            "Unknown authentication type '{other}'; use sas, selfSigned, certificateAuthority or none."
        ))),
    }
}

fn authentication_json(authentication: &Authentication) -> Value {
    let (primary_key, secondary_key, primary_thumbprint, secondary_thumbprint) =
        match authentication {
            Authentication::Sas {
                primary_key,
                secondary_key,
            } => (
                Some(primary_key.as_str()),
                Some(secondary_key.as_str()),
                None,
                None,
            ),
            Authentication::SelfSigned {
                primary_thumbprint,
                secondary_thumbprint,
            } => (
                None,
                None,
                Some(primary_thumbprint.as_str()),
                secondary_thumbprint.as_deref(),
            ),
            Authentication::CertificateAuthority | Authentication::None => (None, None, None, None),
        };
    json!({
        "symmetricKey": {"primaryKey": primary_key, "secondaryKey": secondary_key},
        "x509Thumbprint": {
            "primaryThumbprint": primary_thumbprint,
            "secondaryThumbprint": secondary_thumbprint,
        },
        "type": authentication.type_name(),
    })
}

fn connection_state(runtime: &RuntimeState) -> &'static str {
    if runtime.connected {
        "Connected"
    } else {
        "Disconnected"
    }
}

/// The Device model as IoT Hub returns it.
pub fn device_json(device: &DeviceRecord, runtime: &RuntimeState) -> Value {
    json!({
        "deviceId": device.device_id,
        "generationId": device.generation_id,
        "etag": device.etag,
        "connectionState": connection_state(runtime),
        "status": device.status,
        "statusReason": device.status_reason,
        "connectionStateUpdatedTime": format_time(runtime.connection_state_updated_time),
        "statusUpdatedTime": format_time(device.status_updated_time),
        "lastActivityTime": format_time(runtime.last_activity_time),
        "cloudToDeviceMessageCount": runtime.cloud_to_device_message_count,
        "authentication": authentication_json(&device.authentication),
        "capabilities": {"iotEdge": device.iot_edge},
        "deviceScope": device.device_scope,
        "parentScopes": device.parent_scopes,
    })
}

/// The Module model as IoT Hub returns it.
pub fn module_json(module: &ModuleRecord, runtime: &RuntimeState) -> Value {
    json!({
        "moduleId": module.module_id,
        "managedBy": module.managed_by,
        "deviceId": module.device_id,
        "generationId": module.generation_id,
        "etag": module.etag,
        "connectionState": connection_state(runtime),
        "connectionStateUpdatedTime": format_time(runtime.connection_state_updated_time),
        "lastActivityTime": format_time(runtime.last_activity_time),
        "cloudToDeviceMessageCount": runtime.cloud_to_device_message_count,
        "authentication": authentication_json(&module.authentication),
    })
}

fn parse_status(status: Option<&str>, existing: Option<Status>) -> Result<Status, ApiError> {
    match status.map(str::to_ascii_lowercase).as_deref() {
        None => Ok(existing.unwrap_or(Status::Enabled)),
        Some("enabled") => Ok(Status::Enabled),
        Some("disabled") => Ok(Status::Disabled),
        Some(other) => Err(ApiError::invalid(format!(
            "Unknown status '{other}'; use enabled or disabled."
        ))),
    }
}

/// Builds the record a PUT stores: a new one, or `existing` with the request applied.
fn device_record(
    device_id: &str,
    body: DeviceBody,
    existing: Option<&DeviceRecord>,
) -> Result<DeviceRecord, ApiError> {
    if let Some(body_id) = body.device_id.as_deref()
        && body_id != device_id
    {
        return Err(ApiError::invalid(format!(
            "The body's deviceId '{body_id}' differs from the path's '{device_id}'."
        )));
    }
    let status = parse_status(body.status.as_deref(), existing.map(|device| device.status))?;
    let status_reason = empty_to_none(body.status_reason);
    if status_reason
        .as_ref()
        .is_some_and(|reason| reason.chars().count() > STATUS_REASON_CHARS_MAX)
    {
        return Err(ApiError::invalid(
            "statusReason is longer than 128 characters.",
        ));
    }
    let now = time::OffsetDateTime::now_utc();
    let status_updated_time = match existing {
        Some(existing) if existing.status == status => existing.status_updated_time,
        Some(_) => Some(now),
        None => None,
    };
    Ok(DeviceRecord {
        device_id: device_id.to_owned(),
        generation_id: existing
            .map_or_else(new_generation_id, |device| device.generation_id.clone()),
        etag: new_etag(),
        status,
        status_reason,
        status_updated_time,
        authentication: authentication(
            body.authentication,
            existing.map(|device| &device.authentication),
        )?,
        iot_edge: body
            .capabilities
            .and_then(|capabilities| capabilities.iot_edge)
            .unwrap_or(false),
        device_scope: empty_to_none(body.device_scope),
        parent_scopes: body.parent_scopes.unwrap_or_default(),
    })
}

fn module_record(
    device_id: &str,
    module_id: &str,
    body: ModuleBody,
    existing: Option<&ModuleRecord>,
) -> Result<ModuleRecord, ApiError> {
    if body.device_id.as_deref().is_some_and(|id| id != device_id)
        || body.module_id.as_deref().is_some_and(|id| id != module_id)
    {
        return Err(ApiError::invalid(
            "The body's deviceId or moduleId differs from the path.",
        ));
    }
    Ok(ModuleRecord {
        device_id: device_id.to_owned(),
        module_id: module_id.to_owned(),
        generation_id: existing
            .map_or_else(new_generation_id, |module| module.generation_id.clone()),
        etag: new_etag(),
        managed_by: empty_to_none(body.managed_by),
        authentication: authentication(
            body.authentication,
            existing.map(|module| &module.authentication),
        )?,
    })
}

fn publish_device(state: &ApiState, device_id: &str) {
    if let Err(error) = state.publisher.refresh_device(device_id) {
        // The write is committed; the shards catch up on the next change or restart.
        tracing::error!(%error, device_id, "could not publish a device change to the data plane");
    }
}

fn publish_module(state: &ApiState, device_id: &str, module_id: &str) {
    if let Err(error) = state.publisher.refresh_module(device_id, module_id) {
        tracing::error!(%error, device_id, module_id, "could not publish a module change");
    }
}

/// Creates (no `If-Match`) or replaces (with `If-Match`) a device; the body is parsed
/// against the stored record so the whole write happens under one precondition.
fn write_device(
    state: &ApiState,
    device_id: &str,
    body: DeviceBody,
    wanted: &Precondition,
) -> Result<(DeviceRecord, RuntimeState), ApiError> {
    let hub = state.hub();
    let existing = state
        .store
        .device(&hub.name, device_id)
        .map_err(|error| ApiError::from_device_store(error, device_id))?;
    let (old, runtime) = match existing {
        Some((old, runtime)) => (Some(old), runtime),
        None => (None, RuntimeState::default()),
    };
    // A create that finds the device fails here; a racing create fails in the store.
    let record = device_record(device_id, body, old.as_ref())?;
    let guard = match (wanted, &old) {
        (Precondition::MustNotExist, _) => Precondition::MustNotExist,
        (Precondition::IfMatch(etag), Some(old)) if *etag != old.etag => {
            return Err(ApiError::precondition_failed());
        }
        // Compare-and-swap on the etag read above: a concurrent write in between fails.
        (_, Some(old)) => Precondition::IfMatch(old.etag.clone()),
        (_, None) => return Err(ApiError::device_not_found(device_id)),
    };
    state
        .store
        .put_device(&hub.name, &record, &guard)
        .map_err(|error| match (error, wanted) {
            (StoreError::PreconditionFailed | StoreError::NotFound, Precondition::MustExist) => {
                ApiError::new(
                    super::error::ErrorCode::PreconditionFailed,
                    "The device changed while this update ran; retry.",
                )
            }
            (error, _) => ApiError::from_device_store(error, device_id),
        })?;
    publish_device(state, device_id);
    Ok((record, runtime))
}

pub(super) async fn put_device(
    State(state): State<Arc<ApiState>>,
    Path(device_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    state.authorize(&headers, Permission::RegistryWrite)?;
    validate_device_id(&device_id).map_err(|error| invalid_id(&error))?;
    let wanted = precondition(&headers, Precondition::MustNotExist)?;
    let body: DeviceBody = json_body(body).await?;
    let (record, runtime) = state
        .blocking(move |state| write_device(state, &device_id, body, &wanted))
        .await?;
    state.data_plane_caught_up().await;
    Ok(Json(device_json(&record, &runtime)))
}

pub(super) async fn get_device(
    State(state): State<Arc<ApiState>>,
    Path(device_id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    state.authorize(&headers, Permission::RegistryRead)?;
    let (record, runtime) = state
        .blocking(move |state| {
            state
                .store
                .device(&state.hub().name, &device_id)
                .map_err(|error| ApiError::from_device_store(error, &device_id))?
                .ok_or_else(|| ApiError::device_not_found(&device_id))
        })
        .await?;
    Ok(Json(device_json(&record, &runtime)))
}

pub(super) async fn delete_device(
    State(state): State<Arc<ApiState>>,
    Path(device_id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    state.authorize(&headers, Permission::RegistryWrite)?;
    let wanted = precondition(&headers, Precondition::MustExist)?;
    state
        .blocking(move |state| {
            state
                .store
                .delete_device(&state.hub().name, &device_id, &wanted)
                .map_err(|error| ApiError::from_device_store(error, &device_id))?;
            publish_device(state, &device_id);
            Ok(())
        })
        .await?;
    state.data_plane_caught_up().await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    top: Option<String>,
}

pub(super) async fn list_devices(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    state.authorize(&headers, Permission::RegistryRead)?;
    let top = match query.top.as_deref() {
        None | Some("") => LIST_COUNT_MAX,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|top| (1..=LIST_COUNT_MAX).contains(top))
            .ok_or_else(|| ApiError::invalid("top must be a whole number from 1 to 1000."))?,
    };
    let devices = state
        .blocking(move |state| {
            state
                .store
                .devices(&state.hub().name, top)
                .map_err(|error| ApiError::server(&error))
        })
        .await?;
    Ok(Json(Value::Array(
        devices
            .iter()
            .map(|(device, runtime)| device_json(device, runtime))
            .collect(),
    )))
}

fn write_module(
    state: &ApiState,
    device_id: &str,
    module_id: &str,
    body: ModuleBody,
    wanted: &Precondition,
) -> Result<(ModuleRecord, RuntimeState), ApiError> {
    let hub = state.hub();
    let existing = state
        .store
        .module(&hub.name, device_id, module_id)
        .map_err(|error| ApiError::from_module_store(error, device_id, module_id))?;
    let (old, runtime) = match existing {
        Some((old, runtime)) => (Some(old), runtime),
        None => (None, RuntimeState::default()),
    };
    let record = module_record(device_id, module_id, body, old.as_ref())?;
    let guard = match (wanted, &old) {
        (Precondition::MustNotExist, _) => Precondition::MustNotExist,
        (Precondition::IfMatch(etag), Some(old)) if *etag != old.etag => {
            return Err(ApiError::precondition_failed());
        }
        (_, Some(old)) => Precondition::IfMatch(old.etag.clone()),
        (_, None) => return Err(ApiError::module_not_found(device_id, module_id)),
    };
    state
        .store
        .put_module(&hub.name, &record, &guard)
        .map_err(|error| match error {
            // put_module reports a missing device as NotFound before looking at the module.
            StoreError::NotFound if old.is_none() => ApiError::device_not_found(device_id),
            error => ApiError::from_module_store(error, device_id, module_id),
        })?;
    publish_module(state, device_id, module_id);
    Ok((record, runtime))
}

pub(super) async fn put_module(
    State(state): State<Arc<ApiState>>,
    Path((device_id, module_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    state.authorize(&headers, Permission::RegistryWrite)?;
    validate_device_id(&device_id).map_err(|error| invalid_id(&error))?;
    validate_module_id(&module_id).map_err(|error| invalid_id(&error))?;
    let wanted = precondition(&headers, Precondition::MustNotExist)?;
    let body: ModuleBody = json_body(body).await?;
    let (record, runtime) = state
        .blocking(move |state| write_module(state, &device_id, &module_id, body, &wanted))
        .await?;
    state.data_plane_caught_up().await;
    Ok(Json(module_json(&record, &runtime)))
}

pub(super) async fn get_module(
    State(state): State<Arc<ApiState>>,
    Path((device_id, module_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    state.authorize(&headers, Permission::RegistryRead)?;
    let (record, runtime) = state
        .blocking(move |state| {
            state
                .store
                .module(&state.hub().name, &device_id, &module_id)
                .map_err(|error| ApiError::from_module_store(error, &device_id, &module_id))?
                .ok_or_else(|| ApiError::module_not_found(&device_id, &module_id))
        })
        .await?;
    Ok(Json(module_json(&record, &runtime)))
}

pub(super) async fn list_modules(
    State(state): State<Arc<ApiState>>,
    Path(device_id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    state.authorize(&headers, Permission::RegistryRead)?;
    let modules = state
        .blocking(move |state| {
            state
                .store
                .modules(&state.hub().name, &device_id)
                .map_err(|error| ApiError::from_device_store(error, &device_id))
        })
        .await?;
    Ok(Json(Value::Array(
        modules
            .iter()
            .map(|(module, runtime)| module_json(module, runtime))
            .collect(),
    )))
}

pub(super) async fn delete_module(
    State(state): State<Arc<ApiState>>,
    Path((device_id, module_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    state.authorize(&headers, Permission::RegistryWrite)?;
    let wanted = precondition(&headers, Precondition::MustExist)?;
    state
        .blocking(move |state| {
            state
                .store
                .delete_module(&state.hub().name, &device_id, &module_id, &wanted)
                .map_err(|error| ApiError::from_module_store(error, &device_id, &module_id))?;
            publish_module(state, &device_id, &module_id);
            Ok(())
        })
        .await?;
    state.data_plane_caught_up().await;
    Ok(StatusCode::NO_CONTENT)
}

/// One entry of a bulk request (the ExportImportDevice model).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BulkEntry {
    id: Option<String>,
    module_id: Option<String>,
    #[serde(rename = "eTag")]
    etag: Option<String>,
    import_mode: Option<String>,
    status: Option<String>,
    status_reason: Option<String>,
    authentication: Option<AuthenticationBody>,
    capabilities: Option<CapabilitiesBody>,
    device_scope: Option<String>,
    parent_scopes: Option<Vec<String>>,
}

/// What one bulk entry asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BulkMode {
    Create,
    Update,
    UpdateIfMatchEtag,
    Delete,
    DeleteIfMatchEtag,
}

impl BulkMode {
    fn parse(mode: Option<&str>) -> Result<Self, String> {
        match mode.map(str::to_ascii_lowercase).as_deref() {
            Some("create") => Ok(Self::Create),
            Some("update" | "createorupdate") => Ok(Self::Update),
            Some("updateifmatchetag") => Ok(Self::UpdateIfMatchEtag),
            Some("delete") => Ok(Self::Delete),
            Some("deleteifmatchetag") => Ok(Self::DeleteIfMatchEtag),
            Some(other) => Err(format!(
                "importMode '{other}' is not supported; use create, update, updateIfMatchETag, delete or deleteIfMatchETag"
            )),
            None => Err("importMode is missing".to_owned()),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::UpdateIfMatchEtag => "updateIfMatchETag",
            Self::Delete => "delete",
            Self::DeleteIfMatchEtag => "deleteIfMatchETag",
        }
    }
}

/// The id rules are the data plane's (`dataplane_wire::iothub`): one definition for REST and
/// MQTT, so an id the registry accepts is one a device can connect with.
fn invalid_id(error: &dataplane_wire::iothub::Error) -> ApiError {
    ApiError::invalid(format!("{error}."))
}

fn bulk_one(state: &ApiState, entry: BulkEntry, mode: BulkMode) -> Result<(), ApiError> {
    let device_id = entry.id.clone().unwrap_or_default();
    validate_device_id(&device_id).map_err(|error| invalid_id(&error))?;
    let etag_precondition = || {
        entry
            .etag
            .clone()
            .map(|etag| Precondition::IfMatch(etag.trim_matches('"').to_owned()))
            .ok_or_else(|| ApiError::invalid(format!("importMode {} needs eTag.", mode.name())))
    };
    if let Some(module_id) = entry.module_id.clone() {
        validate_module_id(&module_id).map_err(|error| invalid_id(&error))?;
        let body = ModuleBody {
            module_id: Some(module_id.clone()),
            device_id: Some(device_id.clone()),
            managed_by: None,
            authentication: entry.authentication,
        };
        return match mode {
            BulkMode::Create => write_module(
                state,
                &device_id,
                &module_id,
                body,
                &Precondition::MustNotExist,
            )
            .map(drop),
            // createOrUpdate, decided like the device's: the caller's keys apply either way.
            BulkMode::Update => {
                let exists = state
                    .store
                    .module(&state.hub().name, &device_id, &module_id)
                    .map_err(|error| ApiError::server(&error))?
                    .is_some();
                let wanted = Precondition::create_or_update(exists);
                write_module(state, &device_id, &module_id, body, &wanted).map(drop)
            }
            BulkMode::UpdateIfMatchEtag => {
                write_module(state, &device_id, &module_id, body, &etag_precondition()?).map(drop)
            }
            BulkMode::Delete | BulkMode::DeleteIfMatchEtag => {
                let wanted = if mode == BulkMode::Delete {
                    Precondition::MustExist
                } else {
                    etag_precondition()?
                };
                state
                    .store
                    .delete_module(&state.hub().name, &device_id, &module_id, &wanted)
                    .map_err(|error| ApiError::from_module_store(error, &device_id, &module_id))?;
                publish_module(state, &device_id, &module_id);
                Ok(())
            }
        };
    }
    let body = || DeviceBody {
        device_id: Some(device_id.clone()),
        status: entry.status.clone(),
        status_reason: entry.status_reason.clone(),
        authentication: None,
        capabilities: entry
            .capabilities
            .as_ref()
            .map(|capabilities| CapabilitiesBody {
                iot_edge: capabilities.iot_edge,
            }),
        device_scope: entry.device_scope.clone(),
        parent_scopes: entry.parent_scopes.clone(),
    };
    let with_auth = |mut body: DeviceBody, authentication: Option<AuthenticationBody>| {
        body.authentication = authentication;
        body
    };
    match mode {
        BulkMode::Create => write_device(
            state,
            &device_id,
            with_auth(body(), entry.authentication),
            &Precondition::MustNotExist,
        )
        .map(drop),
        BulkMode::Update => {
            let exists = state
                .store
                .device(&state.hub().name, &device_id)
                .map_err(|error| ApiError::server(&error))?
                .is_some();
            let wanted = Precondition::create_or_update(exists);
            write_device(
                state,
                &device_id,
                with_auth(body(), entry.authentication),
                &wanted,
            )
            .map(drop)
        }
        BulkMode::UpdateIfMatchEtag => {
            let wanted = etag_precondition()?;
            write_device(
                state,
                &device_id,
                with_auth(body(), entry.authentication),
                &wanted,
            )
            .map(drop)
        }
        BulkMode::Delete | BulkMode::DeleteIfMatchEtag => {
            let wanted = if mode == BulkMode::Delete {
                Precondition::MustExist
            } else {
                etag_precondition()?
            };
            state
                .store
                .delete_device(&state.hub().name, &device_id, &wanted)
                .map_err(|error| ApiError::from_device_store(error, &device_id))?;
            publish_device(state, &device_id);
            Ok(())
        }
    }
}

/// `POST /devices`: up to 100 identity operations, each applied on its own; 200 when all
/// succeeded, 400 with the failures otherwise (BulkRegistryOperationResult).
pub(super) async fn bulk(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    state.authorize(&headers, Permission::RegistryWrite)?;
    let entries: Vec<BulkEntry> = json_body(body).await?;
    if entries.is_empty() || entries.len() > BULK_COUNT_MAX {
        return Err(ApiError::invalid(format!(
            "A bulk request holds 1 to {BULK_COUNT_MAX} identities; this one has {}.",
            entries.len()
        )));
    }
    // Validate every mode first, so a malformed request changes nothing.
    let modes = entries
        .iter()
        .map(|entry| BulkMode::parse(entry.import_mode.as_deref()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|reason| ApiError::invalid(format!("{reason}.")))?;
    let errors = state
        .blocking(move |state| {
            let mut errors = Vec::new();
            for (entry, mode) in entries.into_iter().zip(modes) {
                let device_id = entry.id.clone();
                let module_id = entry.module_id.clone();
                if let Err(error) = bulk_one(state, entry, mode) {
                    let (_, number, name) = error.code.parts();
                    errors.push(json!({
                        "deviceId": device_id,
                        "moduleId": module_id,
                        "errorCode": name,
                        "errorStatus": format!("{} ({number})", error.message),
                        "operation": mode.name(),
                    }));
                }
            }
            Ok(errors)
        })
        .await?;
    state.data_plane_caught_up().await;
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let body = json!({
        "isSuccessful": errors.is_empty(),
        "errors": errors,
        "warnings": [],
    });
    Ok((status, Json(body)).into_response())
}
