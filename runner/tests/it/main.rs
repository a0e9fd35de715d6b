//! Integration tests of the `runner` package.

mod cache;
mod cli;
mod scheduling;
mod services;
