//! Integration tests of the `runner` package.

mod cli;
mod services;
