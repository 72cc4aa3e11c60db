//! `GET /statistics/devices` and `GET /statistics/service` (checklist R11).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::ApiState;
use super::error::ApiError;
use crate::registry::hub::Permission;

pub(super) async fn devices(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    state.authorize(&headers, Permission::RegistryRead)?;
    let counts = state
        .blocking(|state| {
            state
                .store
                .device_counts(&state.hub().name)
                .map_err(|error| ApiError::server(&error))
        })
        .await?;
    Ok(Json(json!({
        "totalDeviceCount": counts.total,
        "enabledDeviceCount": counts.enabled,
        "disabledDeviceCount": counts.disabled,
    })))
}

pub(super) async fn service(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    // IoT Hub lets any service or registry reader see the connected count.
    if state
        .authorize(&headers, Permission::ServiceConnect)
        .is_err()
    {
        state.authorize(&headers, Permission::RegistryRead)?;
    }
    let connected = state
        .blocking(|state| {
            state
                .store
                .connected_count(&state.hub().name)
                .map_err(|error| ApiError::server(&error))
        })
        .await?;
    Ok(Json(json!({"connectedDeviceCount": connected})))
}
