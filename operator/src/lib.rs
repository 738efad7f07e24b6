//! signet-operator: reconciles the cluster's SignetConfig into a managed signet-signer.
//!
//! The pipeline: `dereference` (reads the cluster) → `validate` (pure) → `build` (pure) →
//! `apply` (server-side apply, prune) → `status`. `controller` wires it to the watch loop.

pub mod apply;
pub mod build;
pub mod controller;
pub mod dereference;
pub mod events;
pub mod install;
pub mod migrate;
pub mod monitoring;
pub mod names;
pub mod status;
pub mod tuf;
pub mod validate;
pub mod verification;
