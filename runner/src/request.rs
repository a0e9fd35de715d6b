pub use runner_request::*;
