//! vTPM instances and transports (stub, to be written).
