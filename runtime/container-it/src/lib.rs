//! Test-only crate: its integration tests (`tests/it`) build the `corral-agent` and
//! `corral-sidecar` images with `scripts/build-images.sh` (offline base) and run a
//! whole sandbox on the local Docker engine — internal run network, egress network,
//! hardened agent container — against a mock LLM, an integration API and an event
//! sink on the test host. Nothing here is shipped.
#![forbid(unsafe_code)]
