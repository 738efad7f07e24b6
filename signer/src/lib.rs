//! signet-signer: watches completed Tekton runs and signs their provenance.
//!
//! The library holds everything; `main.rs` only parses arguments and calls in.

pub mod config;
pub mod controller;
pub mod dsse;
pub mod extract;
pub mod formats;
pub mod health;
pub mod keyless;
pub mod keys;
pub mod kms;
pub mod lease;
pub mod mark;
pub mod metrics;
pub mod oci;
pub mod pipeline;
pub mod process;
pub mod queue;
pub mod ratelimit;
pub mod redacted;
pub mod run;
pub mod sources;
pub mod spiffe;
pub mod transparency;
pub mod watch_status;
