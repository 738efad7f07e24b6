//! Test support for Signet's end-to-end tests: the running control plane (tests/env), a
//! namespace per test, and clients that act as a ServiceAccount rather than as an admin.
//!
//! Only tests use this crate; nothing here is shipped.

pub mod audit;
pub mod aws;
pub mod bench;
pub mod clouds;
pub mod control_plane;
pub mod crane;
pub mod env;
pub mod fault_proxy;
pub mod identity;
pub mod kms_fixtures;
pub mod measure;
pub mod namespace;
pub mod olm;
pub mod operator;
pub mod plot;
pub mod pods;
pub mod registry;
pub mod serve;
pub mod sigstore;
pub mod storage;
pub mod tuf;
pub mod vault;

pub use env::TestEnv;
pub use identity::ServiceAccountIdentity;
pub use namespace::TestNamespace;
