//! signet-signer: watches completed Tekton runs and signs their provenance, as Tekton Chains
//! does. A run's path, and the module that owns each step:
//!
//! ```text
//! watch ──▶ run ──▶ formats ──▶ signing ──▶ transparency ──▶ storage ──▶ watch::mark
//! (events,  (the run  (in-toto,    (keys, KMS,  (Rekor entry,    (tekton,     (signed=true
//!  queue,    view,     SLSA)        keyless,     verified)        oci, …)      or failed)
//!  retries)  type                   DSSE)
//!            hinting)
//! ```
//!
//! `annotations` owns every `chains.tekton.dev/*` name. The library holds everything;
//! `main.rs` only parses arguments and calls in.

pub mod annotations;
pub mod bodies;
pub mod cloud;
pub mod formats;
pub mod metrics;
pub mod peers;
pub mod run;
pub mod signing;
pub mod storage;
pub mod transparency;
pub mod watch;
