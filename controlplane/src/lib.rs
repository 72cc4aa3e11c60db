//! The control plane: identities, policies, the IoT Hub service REST API and the store.
