//! sgr: build, render, push and release GPU/ML images.
//!
//! The binary is a thin shell over this library: `cli` holds the clap types,
//! `commands` one function per verb, the pure logic lives in `version`, and
//! each external system has one adapter (`git`, version files). Only
//! `output` prints.

pub mod atomic;
pub mod aws;
pub mod build;
pub mod cli;
pub mod commands;
pub mod digest;
pub mod docker;
pub mod env;
pub mod error;
pub mod git;
pub mod github;
pub mod k8s;
pub mod output;
pub mod registry;
pub mod secrets;
pub mod template;
pub mod version;
pub mod version_file;
