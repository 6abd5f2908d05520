//! Event data decoding (placeholder while the log layer lands).
pub struct BlobDescription;
pub struct EventData;
pub struct FirmwareBlob;
pub struct GptData;
pub struct GptPartition;
pub struct HandoffTables;
pub struct ImageLoadEvent;
pub struct IplString;
pub struct NoActionEvent;
pub struct UefiVariableData;
