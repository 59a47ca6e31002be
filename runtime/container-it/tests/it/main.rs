//! Container tests: the images from `scripts/build-images.sh --profile debug`
//! (offline base) run as a real sandbox on the local Docker engine (SPEC §8): an
//! internal run network, an egress network, the sidecar on both, the hardened agent
//! only on the run network. The model provider, an integration's API and the
//! platform's event sink are servers on the test host, bound to the Docker host
//! gateway address only.

mod docker;
mod sandbox;
mod servers;
