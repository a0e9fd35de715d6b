//! Integration tests of the `runner` package.

mod cache;
mod cli;
mod envelope;
mod faults;
mod hostile;
mod kubernetes;
mod scheduling;
mod services;
mod studioml;
mod weather;
