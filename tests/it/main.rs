//! Integration tests: the real `flowprior` binary on tiny data the tests create.
//! One test binary (modules below) so the crate links once.

mod cli_jobs;
mod cluster;
mod common;
mod generator;
mod honesty;
mod objects;
mod postgres;
mod prior;
mod results;
mod snapshots;
mod store_processes;
mod sweep;
mod tokenizer;
mod toy;
mod trust;
