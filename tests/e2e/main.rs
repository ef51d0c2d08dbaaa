//! End-to-end tests: the real `cccc` binary as the daemon on a real unix socket in a temp
//! `CCCC_HOME`, driven over IPC v1, through the CLI, and by the official Python SDK.
//!
//! One test binary (modules below) keeps link time down on 2-core CI.

mod support;

mod faults;
mod interop;
mod checklist;
mod cli;
mod actors;
mod im;
mod telegram;
mod discord;
