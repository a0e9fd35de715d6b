//! Fuzzes the Go-template dialect: any input must parse to a template or an
//! error with a position, and a parsed template must render or fail cleanly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sgr::template::go::{Host, Template, Value};

struct Quiet;

impl Host for Quiet {
    fn env(&self, name: &str) -> Option<String> {
        (name == "USER").then(|| "fuzz".to_owned())
    }
    fn now(&self) -> String {
        "2019-01-25 19:10:44 +0000 UTC".to_owned()
    }
    fn uuid(&self) -> Result<String, String> {
        Ok("00000000-0000-4000-8000-000000000000".to_owned())
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else { return };
    let context = Value::from(&serde_json_context());
    match Template::parse(source) {
        Ok(template) => {
            let _ = template.render(&context, &Quiet);
            let _ = template.render_with(&context, &Quiet, true);
        }
        Err(error) => {
            let position = error.position();
            assert!(position.line >= 1 && position.column >= 1, "{error}");
        }
    }
});

fn serde_json_context() -> sgr_fuzz_json::Value {
    sgr_fuzz_json::json!({
        "duat": {"version": "0.9.9", "gitBranch": "feature/197_hybrid"},
        "list": ["a", "b"],
        "map": {"k": 1.5, "nested": {"x": true}},
        "n": 3,
    })
}

use serde_json as sgr_fuzz_json;
