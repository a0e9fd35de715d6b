//! Integration tests of the `runner` package.

mod cli;
mod scheduling;
mod services;
