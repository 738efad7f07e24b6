//! Process plumbing the operator and the signer share, so that neither links the other:
//! start-up and logging (`process`), the API client's rate limit (`ratelimit`), leader
//! election (`lease`), and the `/healthz`, `/readyz` and `/metrics` server (`health`).

pub mod health;
pub mod lease;
pub mod process;
pub mod ratelimit;
pub mod shards;
