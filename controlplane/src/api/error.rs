//! IoT Hub's error responses: status, numeric code, name, and a message a person can act on.
//!
//! Body shape (what the Java and .NET service SDKs parse out of `Message`, plus the numeric
//! fields newer clients read):
//! ```json
//! {"Message":"ErrorCode:DeviceNotFound;Device 'dev1' is not registered.",
//!  "ExceptionMessage":"Tracking ID:0f1e...-G:0-TimeStamp:11/22/2026 10:00:00",
//!  "errorCode":404001,"trackingId":"0f1e...","message":"Device 'dev1' is not registered.",
//!  "timestampUtc":"2026-11-22T10:00:00Z"}
//! ```
//! The `iothub-errorcode` response header carries the name too.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;

/// IoT Hub error codes; the numbers are IoT Hub's, never reused for something else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 400004: a malformed body, an invalid id or field.
    ArgumentInvalid,
    /// 401003: a missing, malformed, expired or forged token, or one without the permission.
    IotHubUnauthorizedAccess,
    /// 404001: no such device.
    DeviceNotFound,
    /// 404010: no such module.
    ModuleNotFound,
    /// 404: no such route.
    ResourceNotFound,
    /// 405: the route exists but not with this method.
    MethodNotAllowed,
    /// 409001: the device exists.
    DeviceAlreadyExists,
    /// 409301: the module exists.
    ModuleAlreadyExistsOnDevice,
    /// 412002: `If-Match` does not match the current etag.
    PreconditionFailed,
    /// 413: the body is larger than the API accepts.
    RequestEntityTooLarge,
    /// 500001: the server failed; nothing was written.
    ServerError,
}

impl ErrorCode {
    /// The HTTP status, the numeric code and the name.
    pub fn parts(self) -> (StatusCode, u32, &'static str) {
        match self {
            Self::ArgumentInvalid => (StatusCode::BAD_REQUEST, 400_004, "ArgumentInvalid"),
            Self::IotHubUnauthorizedAccess => (
                StatusCode::UNAUTHORIZED,
                401_003,
                "IotHubUnauthorizedAccess",
            ),
            Self::DeviceNotFound => (StatusCode::NOT_FOUND, 404_001, "DeviceNotFound"),
            Self::ModuleNotFound => (StatusCode::NOT_FOUND, 404_010, "ModuleNotFound"),
            Self::ResourceNotFound => (StatusCode::NOT_FOUND, 404_000, "ResourceNotFound"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, 405_000, "MethodNotAllowed"),
            Self::DeviceAlreadyExists => (StatusCode::CONFLICT, 409_001, "DeviceAlreadyExists"),
            Self::ModuleAlreadyExistsOnDevice => {
                (StatusCode::CONFLICT, 409_301, "ModuleAlreadyExistsOnDevice")
            }
            Self::PreconditionFailed => (
                StatusCode::PRECONDITION_FAILED,
                412_002,
                "PreconditionFailed",
            ),
            Self::RequestEntityTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                413_002,
                "RequestEntityTooLarge",
            ),
            Self::ServerError => (StatusCode::INTERNAL_SERVER_ERROR, 500_001, "ServerError"),
        }
    }
}

/// An error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// Which error.
    pub code: ErrorCode,
    /// What happened and what to do, for a person.
    pub message: String,
}

impl ApiError {
    /// An error with a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// 400 ArgumentInvalid.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ArgumentInvalid, message)
    }

    /// 401 IotHubUnauthorizedAccess.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::IotHubUnauthorizedAccess, message)
    }

    /// 404001 for a device id.
    pub fn device_not_found(device_id: &str) -> Self {
        Self::new(
            ErrorCode::DeviceNotFound,
            format!("Device '{device_id}' is not registered in this hub."),
        )
    }

    /// 404010 for a module id.
    pub fn module_not_found(device_id: &str, module_id: &str) -> Self {
        Self::new(
            ErrorCode::ModuleNotFound,
            format!("Module '{module_id}' is not registered on device '{device_id}'."),
        )
    }

    /// 412002.
    pub fn precondition_failed() -> Self {
        Self::new(
            ErrorCode::PreconditionFailed,
            "The If-Match etag does not match the current one: read the resource again and retry with its etag, or send If-Match: \"*\".",
        )
    }

    /// Maps a store failure for a device.
    pub fn from_device_store(error: StoreError, device_id: &str) -> Self {
        match error {
            StoreError::NotFound => Self::device_not_found(device_id),
            StoreError::AlreadyExists => Self::new(
                ErrorCode::DeviceAlreadyExists,
                format!(
                    "Device '{device_id}' already exists; to update it, send If-Match with its etag (or \"*\")."
                ),
            ),
            StoreError::PreconditionFailed => Self::precondition_failed(),
            error => Self::server(&error),
        }
    }

    /// Maps a store failure for a module.
    pub fn from_module_store(error: StoreError, device_id: &str, module_id: &str) -> Self {
        match error {
            StoreError::NotFound => Self::module_not_found(device_id, module_id),
            StoreError::AlreadyExists => Self::new(
                ErrorCode::ModuleAlreadyExistsOnDevice,
                format!(
                    "Module '{module_id}' already exists on device '{device_id}'; to update it, send If-Match with its etag (or \"*\")."
                ),
            ),
            StoreError::PreconditionFailed => Self::precondition_failed(),
            error => Self::server(&error),
        }
    }

    /// 500 for an internal failure, logged with its cause; the client sees a generic message.
    pub fn server(error: &dyn std::fmt::Display) -> Self {
        tracing::error!(%error, "request failed");
        Self::new(
            ErrorCode::ServerError,
            "The server failed to complete the request; nothing was changed. The server log has the cause.",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, number, name) = self.code.parts();
        let tracking_id = uuid::Uuid::new_v4().simple().to_string();
        let now = time::OffsetDateTime::now_utc();
        let legacy_stamp = now
            .format(time::macros::format_description!(
                "[month]/[day]/[year] [hour]:[minute]:[second]"
            ))
            .unwrap_or_default();
        let body = serde_json::json!({
            "Message": format!("ErrorCode:{name};{}", self.message),
            "ExceptionMessage": format!("Tracking ID:{tracking_id}-G:0-TimeStamp:{legacy_stamp}"),
            "errorCode": number,
            "trackingId": tracking_id,
            "message": self.message,
            "timestampUtc": crate::registry::model::format_time(Some(now)),
        });
        let mut response = (status, axum::Json(body)).into_response();
        response
            .headers_mut()
            .insert("iothub-errorcode", HeaderValue::from_static(name));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_maps_to_a_distinct_number_with_its_status_class() {
        let all = [
            ErrorCode::ArgumentInvalid,
            ErrorCode::IotHubUnauthorizedAccess,
            ErrorCode::DeviceNotFound,
            ErrorCode::ModuleNotFound,
            ErrorCode::ResourceNotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::DeviceAlreadyExists,
            ErrorCode::ModuleAlreadyExistsOnDevice,
            ErrorCode::PreconditionFailed,
            ErrorCode::RequestEntityTooLarge,
            ErrorCode::ServerError,
        ];
        let mut numbers = std::collections::HashSet::new();
        for code in all {
            let (status, number, name) = code.parts();
            assert_eq!(u32::from(status.as_u16()), number / 1000, "{name}");
            assert!(numbers.insert(number), "{name} reuses {number}");
        }
    }
}
