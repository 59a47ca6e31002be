//! Outgoing webhooks (SPEC §11): which targets may be called, the event envelope,
//! when attempts happen and how one attempt is made and judged. Storage, queueing and
//! the API live in the crates that use this one.

pub mod deliver;
pub mod envelope;
pub mod schedule;
pub mod ssrf;

pub use deliver::{Attempt, Deliverer, Outcome};
pub use envelope::PayloadMode;
pub use ssrf::{GuardedResolver, Policy, TargetError};
