//! resp-sidecar: a Redis-protocol sidecar proxy.
//!
//! Modules present in this branch: `config` (the typed, validated settings
//! and how they are layered from file, environment and flags) and `cli`
//! (command-line parsing and the `check-config` subcommand).

#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
