//! The end-to-end specs: the lazytunnel binary against a real OpenSSH server, real clients
//! (`ssh`, `curl`, `ssh-agent`, systemd's socket activator) and loopback targets, plus the
//! property specs of the parsers and the self-checks of the test harness.
//!
//! One test binary, not one per file: each binary links the whole crate graph and compiles
//! `common` again, and the test runner runs binaries one after another, so many small binaries
//! cost build time and leave the machine idle while one binary waits on its slowest test. Here
//! every spec is a thread of one runner; specs share nothing but the machine (see `common`).
//!
//! Two specs live in binaries of their own: `isolation` measures latency and throughput ratios
//! that another spec's bulk transfer beside it would skew, and `flow_in_process` installs a
//! process-wide log subscriber.

#[path = "../common/mod.rs"]
mod common;
#[path = "../control_support/mod.rs"]
mod control_support;
#[path = "../forwarding_support/mod.rs"]
mod forwarding_support;
mod server_channels_support;
mod service_support;

// Harness self-checks.
mod fault_proxy;
mod harness;
mod netns_harness;

// The command line, configuration and ssh_config reading.
mod cli;
mod manual;
mod parser_fuzz;
mod ssh_config_differential;
mod ssh_config_oracle;

// Forwarding through a real sshd.
mod auth_hostkeys;
mod forwarding;
mod forwarding_lifecycle;
mod server_channels;
mod server_closes_first;
mod socks;
mod unix_sockets;

// Faults and limits.
mod address_loss;
mod connect_failure;
mod hygiene;
mod reliability;
mod stuck_files;

// Control, reload and service mode.
mod background;
mod control;
mod install;
mod reload;
mod socket_activation;
mod startup_hardening;
