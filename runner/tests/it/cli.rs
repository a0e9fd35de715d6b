//! The skeleton binary refuses to run rather than pretend to work.

use assert_cmd::cargo::cargo_bin_cmd;
use predicates::str::contains;

#[test]
fn refuses_to_run_until_queues_exist() {
    cargo_bin_cmd!("runner")
        .assert()
        .code(2)
        .stderr(contains("cannot process experiments yet"));
    cargo_bin_cmd!("runner")
        .arg("--version")
        .assert()
        .success()
        .stdout(contains("runner "));
}
