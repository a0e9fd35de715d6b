//! Building images: the build plan (pure), `.dockerignore` rules (pure) and
//! the streamed build context.

pub mod context;
pub mod dockerignore;
pub mod plan;
