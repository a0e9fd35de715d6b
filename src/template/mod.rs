//! Template rendering: one context (git, version, user, environment and user
//! values) for two dialects, tera for new templates and duat's Go-template
//! dialect for existing ones.

pub mod context;
pub mod dialect;
pub mod go;
pub mod isolated;
pub mod process_host;
pub mod settings;
pub mod tera_dialect;
