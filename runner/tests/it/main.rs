//! Integration tests of the `runner` package.

mod cache;
mod cli;
mod faults;
mod kubernetes;
mod scheduling;
mod services;
