//! Process plumbing the operator and the signer share, so that neither links the other:
//! start-up and logging (`process`), the API client's rate limit (`ratelimit`), leader
//! election (`lease`), work shared by shard Leases (`shards`), the `/healthz`, `/readyz` and
//! `/metrics` server (`health`), and taking the signer's finalizers off runs (`release`).

pub mod health;
pub mod lease;
pub mod process;
pub mod ratelimit;
pub mod release;
pub mod shards;
