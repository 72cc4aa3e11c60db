//! IoT Hub's rules on top of MQTT: identities, the CONNECT user name, the topic grammar,
//! property bags, message size, and which SAS tokens authorize which identity.
//!
//! A session uses it in this order:
//!
//! 1. CONNECT: [`ClientId::parse`] the client id, [`Username::parse`] the user name against
//!    it, [`crate::sas::SasToken::parse`] the password, [`authorize`] the token for the client
//!    id, then verify it with the keys of the returned [`KeyScope`].
//! 2. SUBSCRIBE: [`Subscription::parse`] each filter.
//! 3. PUBLISH: [`PublishTopic::parse`] the topic; for telemetry, [`MessageProperties::parse`]
//!    its property bag and [`MessageProperties::check_message_size`] it with the body.
//! 4. To the device: the `write_*` topic builders and [`crate::mqtt::OutgoingPublish`].
//!
//! Every parser borrows from its input and allocates only to decode percent-escapes. Every
//! [`Error`] maps to what the device sees through [`Error::reaction`].

mod auth;
mod error;
mod expiry;
mod identity;
mod properties;
mod topic;
mod username;

pub use auth::{KeyScope, authorize, is_accepted_host};
pub use error::{Error, IdKind, IdProblem};
pub use expiry::parse_expiry_ms;
pub use identity::{ClientId, ID_BYTES_MAX, validate_device_id, validate_module_id};
pub use properties::{
    ACK_PROPERTY, ApplicationProperties, MESSAGE_BYTES_MAX, MessageProperties, PROPERTY_COUNT_MAX,
    PROPERTY_NAME_BYTES_MAX, PROPERTY_VALUE_BYTES_MAX, PropertyWriter, SystemProperty,
};
pub use topic::{
    DeliveryTopic, PublishTopic, Subscription, write_c2d_topic, write_desired_patch_topic,
    write_method_request_topic, write_module_input_topic, write_telemetry_topic,
    write_twin_response_topic,
};
pub use username::Username;
