//! The IoT Hub service REST API (api-version 2021-04-12), shaped exactly as the official
//! service SDKs call it: paths, status codes, JSON models and error bodies.
//!
//! Handlers authorize first, then parse, then call the store on a blocking thread, then publish
//! the change to the data plane. A request either applies whole or changes nothing.

pub mod auth;
mod endpoints;
pub mod error;
mod identities;
mod statistics;

use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method};
use axum::routing::get;
use serde::de::DeserializeOwned;

use crate::registry::hub::{HubRecord, Permission};
use crate::store::{Precondition, Store};
use crate::sync::Publisher;
use error::{ApiError, ErrorCode};

/// Largest request body accepted: a bulk request of 100 identities fits with room to spare.
pub const BODY_BYTES_MAX: usize = 1 << 20;

/// What every handler shares.
pub struct ApiState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The hub this API serves; replaced when its policies change.
    pub hub: RwLock<Arc<HubRecord>>,
    /// Names clients may address the hub by.
    pub accepted_hosts: Vec<String>,
    /// Publishes identity changes to the data plane.
    pub publisher: Arc<Publisher>,
    /// Serialises changes to the hub record (read, modify, store, publish).
    pub hub_writes: std::sync::Mutex<()>,
    /// The Event Hubs-compatible endpoint, `sb://{host}/`.
    pub event_hub_endpoint: String,
    /// Retention of the built-in endpoint, in days, as configured.
    pub retention_days: u32,
    /// What the data plane's shards have applied; `None` when no data plane runs.
    pub applied: Option<Arc<schemas::plane::AppliedVersions>>,
}

/// How long a registry write waits for the data plane to apply it before answering anyway.
const DATA_PLANE_CATCH_UP_MAX: std::time::Duration = std::time::Duration::from_secs(2);

impl std::fmt::Debug for ApiState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("ApiState").finish_non_exhaustive()
    }
}

impl ApiState {
    /// The hub as it is now.
    pub fn hub(&self) -> Arc<HubRecord> {
        self.hub
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Changes the hub record under `change` (which returns whether it changed anything),
    /// stores it, and publishes the consumer groups; returns `change`'s answer.
    pub fn update_hub(
        &self,
        change: impl FnOnce(&mut HubRecord) -> Result<bool, ApiError>,
    ) -> Result<bool, ApiError> {
        let _serialised = self
            .hub_writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut hub = (*self.hub()).clone();
        if !change(&mut hub)? {
            return Ok(false);
        }
        self.store
            .update_hub(&hub)
            .map_err(|error| ApiError::server(&error))?;
        self.publisher
            .set_consumer_groups(hub.consumer_groups.clone());
        *self
            .hub
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(hub);
        Ok(true)
    }

    /// Waits until every shard applied the changes published so far, so that what a write
    /// created is usable on the data plane when the call returns (a device can connect at
    /// once). Gives up after [`DATA_PLANE_CATCH_UP_MAX`] with a warning: the write is committed
    /// and the shards catch up on their own.
    pub async fn data_plane_caught_up(&self) {
        let Some(applied) = &self.applied else {
            return;
        };
        let wanted = self.publisher.version();
        let started = std::time::Instant::now();
        while applied.min() < wanted {
            if started.elapsed() > DATA_PLANE_CATCH_UP_MAX {
                tracing::warn!(
                    wanted,
                    applied = applied.min(),
                    "the data plane is slow to apply registry changes"
                );
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    /// Authorizes a request for `permission`.
    pub fn authorize(&self, headers: &HeaderMap, permission: Permission) -> Result<(), ApiError> {
        auth::authorize(
            &self.hub(),
            &self.accepted_hosts,
            headers,
            permission,
            now_secs(),
        )
    }

    /// Runs a store call on a blocking thread.
    pub async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&ApiState) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let state = Arc::clone(self);
        tokio::task::spawn_blocking(move || work(&state))
            .await
            .map_err(|error| ApiError::server(&error))?
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// A body this much over the limit is not drained: the connection is closed instead.
const BODY_DRAIN_BYTES_MAX: usize = 64 << 20;

/// Reads a JSON body of at most [`BODY_BYTES_MAX`] bytes.
///
/// A larger body is read to its end (and dropped, up to [`BODY_DRAIN_BYTES_MAX`]) before the
/// 413 goes out: a client still sending would otherwise see the connection reset instead of
/// the answer.
pub async fn json_body<T: DeserializeOwned>(body: Body) -> Result<T, ApiError> {
    use http_body_util::BodyExt as _;
    let mut body = body;
    let mut bytes = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|error| ApiError::invalid(format!("Reading the body failed: {error}.")))?;
        if let Some(data) = frame.data_ref() {
            seen += data.len();
            if seen <= BODY_BYTES_MAX {
                bytes.extend_from_slice(data);
            } else if seen > BODY_DRAIN_BYTES_MAX {
                break;
            }
        }
    }
    if seen > BODY_BYTES_MAX {
        return Err(ApiError::new(
            ErrorCode::RequestEntityTooLarge,
            format!("The request body is larger than {BODY_BYTES_MAX} bytes."),
        ));
    }
    if bytes.is_empty() {
        return Err(ApiError::invalid("The request needs a JSON body."));
    }
    serde_json::from_slice(&bytes).map_err(|error| {
        ApiError::invalid(format!(
            "The request body is not valid JSON for this call: {error}."
        ))
    })
}

/// The precondition an `If-Match` header asks for; `absent` applies when there is none.
pub fn precondition(headers: &HeaderMap, absent: Precondition) -> Result<Precondition, ApiError> {
    let Some(value) = headers.get(axum::http::header::IF_MATCH) else {
        return Ok(absent);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::invalid("The If-Match header is not ASCII."))?
        .trim();
    let value = value.strip_prefix("W/").unwrap_or(value);
    let value = value
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(value);
    Ok(match value {
        "" | "*" => Precondition::MustExist,
        etag => Precondition::IfMatch(etag.to_owned()),
    })
}

/// The router of the whole API.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route(
            "/devices",
            get(identities::list_devices).post(identities::bulk),
        )
        .route(
            "/devices/{device_id}",
            get(identities::get_device)
                .put(identities::put_device)
                .delete(identities::delete_device),
        )
        .route(
            "/devices/{device_id}/modules",
            get(identities::list_modules),
        )
        .route(
            "/devices/{device_id}/modules/{module_id}",
            get(identities::get_module)
                .put(identities::put_module)
                .delete(identities::delete_module),
        )
        .route("/eventHubEndpoints/events", get(endpoints::properties))
        .route(
            "/eventHubEndpoints/events/consumerGroups",
            get(endpoints::list_consumer_groups),
        )
        .route(
            "/eventHubEndpoints/events/consumerGroups/{name}",
            axum::routing::put(endpoints::put_consumer_group)
                .delete(endpoints::delete_consumer_group),
        )
        .route("/statistics/devices", get(statistics::devices))
        .route("/statistics/service", get(statistics::service))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        ErrorCode::ResourceNotFound,
        format!("No such resource: {method} {}.", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("{} does not support {method}.", uri.path()),
    )
}
