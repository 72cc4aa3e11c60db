//! The built-in Event Hubs-compatible endpoint: its properties and consumer groups (checklist
//! D5, D6, H4), shaped like IoT Hub's `eventHubEndpoints.events` resource.
//!
//! `GET /eventHubEndpoints/events` is what the portal's "Built-in endpoints" page shows: the
//! Event Hubs-compatible name, endpoint, partitions and a connection string (for the `service`
//! policy). Consumer groups are `PUT`/`GET`/`DELETE` under `.../consumerGroups/{name}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::ApiState;
use super::error::ApiError;
use crate::registry::hub::{
    CONSUMER_GROUPS_MAX, DEFAULT_CONSUMER_GROUP, Permission, validate_consumer_group,
};

/// Reading needs ServiceConnect (a back end about to read) or RegistryRead.
fn authorize_read(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    if state.authorize(headers, Permission::ServiceConnect).is_ok() {
        return Ok(());
    }
    state.authorize(headers, Permission::RegistryRead)
}

pub(super) async fn properties(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize_read(&state, &headers)?;
    let hub = state.hub();
    let endpoint = &state.event_hub_endpoint;
    let connection_string = hub.policy("service").map(|policy| {
        format!(
            "Endpoint={endpoint};SharedAccessKeyName={};SharedAccessKey={};EntityPath={}",
            policy.name, policy.primary_key, hub.name
        )
    });
    Ok(Json(json!({
        "path": hub.name,
        "endpoint": endpoint,
        "partitionCount": hub.partition_count,
        "partitionIds": (0..hub.partition_count).map(|p| p.to_string()).collect::<Vec<_>>(),
        "retentionTimeInDays": state.retention_days,
        "consumerGroups": hub.consumer_groups,
        "connectionString": connection_string,
    })))
}

pub(super) async fn list_consumer_groups(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize_read(&state, &headers)?;
    let groups: Vec<Value> = state
        .hub()
        .consumer_groups
        .iter()
        .map(|name| json!({"name": name}))
        .collect();
    Ok(Json(Value::Array(groups)))
}

pub(super) async fn put_consumer_group(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    state.authorize(&headers, Permission::RegistryWrite)?;
    validate_consumer_group(&name)
        .or_else(|error| {
            if name == DEFAULT_CONSUMER_GROUP {
                Ok(())
            } else {
                Err(error)
            }
        })
        .map_err(ApiError::invalid)?;
    let answer = state
        .blocking(move |state| {
            state.update_hub(|hub| {
                if hub.consumer_groups.iter().any(|group| group.eq_ignore_ascii_case(&name)) {
                    return Ok(false);
                }
                if hub.consumer_groups.len() >= CONSUMER_GROUPS_MAX {
                    return Err(ApiError::invalid(format!(
                        "The hub already has {CONSUMER_GROUPS_MAX} consumer groups, the most it may have."
                    )));
                }
                hub.consumer_groups.push(name.clone());
                Ok(true)
            })?;
            Ok(Json(json!({"name": name})))
        })
        .await?;
    state.data_plane_caught_up().await;
    Ok(answer)
}

pub(super) async fn delete_consumer_group(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    state.authorize(&headers, Permission::RegistryWrite)?;
    if name.eq_ignore_ascii_case(DEFAULT_CONSUMER_GROUP) {
        return Err(ApiError::invalid(
            "The $Default consumer group cannot be deleted.",
        ));
    }
    state
        .blocking(move |state| {
            let removed = state.update_hub(|hub| {
                let before = hub.consumer_groups.len();
                hub.consumer_groups
                    .retain(|group| !group.eq_ignore_ascii_case(&name));
                Ok(hub.consumer_groups.len() != before)
            })?;
            if removed {
                Ok(StatusCode::NO_CONTENT)
            } else {
                Err(ApiError::new(
                    super::error::ErrorCode::ResourceNotFound,
                    format!("The consumer group '{name}' does not exist."),
                ))
            }
        })
        .await
}
