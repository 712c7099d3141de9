//! Test support for Wharf: a real registry, the sample image, Docker Engine helpers and
//! a real fleet of Docker-in-Docker hosts running `wharf agent` ([`fleet`]; see FLEET.md).
//!
//! Everything here talks to real software on the test machine: the Docker Engine at
//! `/var/run/docker.sock` (or `DOCKER_HOST=unix://…`) and Debian's `docker-registry`
//! binary. Nothing is pulled from the internet; images are built locally.

pub mod bare_host;
pub mod chaos;
pub mod docker;
pub mod fleet;
mod fleet_docker;
pub mod fleet_scenario;
pub mod fleet_server;
pub mod fleet_test;
pub mod host_image;
pub mod registry;
pub mod sample_image;
pub mod store_stall;

/// The bollard version this crate talks to the engine with, so callers can name its types.
pub use bollard;
