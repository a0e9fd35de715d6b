//! Building images: the build plan (pure), `.dockerignore` rules (pure), the
//! labels instruction (pure) and the streamed build context.

pub mod context;
pub mod dockerignore;
pub mod images;
pub mod labels;
pub mod plan;
pub mod prepare;
