//! mllp: an MLLP (Minimal Lower Layer Protocol, HL7 v2 over TCP) server library.
//!
//! Layout: [`codec`] frames bytes (sans-IO), [`hl7`] reads MSH and builds HL7 acknowledgements,
//! [`config`] holds properties and Config settings, [`connection`] is the protocol of one
//! connection (sans-IO: bytes and time in, events, replies and deadlines out), `transport` is
//! plain TCP or TLS behind one read/write path, `dispatch` is the one event path to the host,
//! `reactor` drives sockets and timers on its own thread, [`server`] is the safe Rust API, and
//! `ffi` is the C ABI over it. [`bufpool`] holds the message buffers a server's connections
//! share.

#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod bufpool;
pub mod charset;
pub mod client;
pub mod codec;
pub mod config;
pub mod connection;
pub mod dedupe;
mod dispatch;
pub mod error;
pub mod events;
pub mod hl7;
pub mod metrics;
pub mod proxy;
mod reactor;
pub mod server;
mod shared;
pub mod tls;
mod transport;

pub use config::{AckMode, EventMode, Settings};
pub use error::{code, Error, Result};
pub use events::*;
pub use hl7::AckCode;
pub use metrics::{Metrics, MetricsSnapshot};
pub use server::Server;
pub mod ffi;
