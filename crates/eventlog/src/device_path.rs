//! Device paths (placeholder).
pub struct DevicePath;
pub struct DevicePathNode;
