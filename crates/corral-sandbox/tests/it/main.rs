//! Sandbox tests on the real Docker engine and with real processes: the images
//! and binaries are this workspace's (`scripts/build-images.sh --profile debug`,
//! `cargo build -p corral-agent -p corral-sidecar`), the model is
//! `corral_mockllm::MockLlm`, and the platform is a recording sink.

mod common;
mod docker_backend;
mod docker_run;
mod process_backend;
