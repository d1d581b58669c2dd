//! The MLLP client (sender).
pub mod sender;
