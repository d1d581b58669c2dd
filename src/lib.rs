//! mllp: an MLLP (Minimal Lower Layer Protocol, HL7 v2 over TCP) server library.
//!
//! Layout: [`codec`] frames bytes (sans-IO), [`hl7`] reads MSH and builds HL7
//! acknowledgements, [`config`] holds properties and Config settings, [`connection`] is the
//! per-connection state machine, `reactor` owns the sockets on its own thread, [`server`] is
//! the safe Rust API and `ffi` the C ABI over it.

pub mod codec;
pub mod hl7;
