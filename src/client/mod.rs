//! The MLLP client (sender).

pub mod tls;
