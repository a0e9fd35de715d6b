//! The fake GitHub of the tests as a process, for benchmarks and manual
//! trials: `fake-github OWNER REPO TOKEN` prints the API URL on stdout and
//! serves until stdin closes or it is killed.

use std::io::{BufRead as _, Write as _};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(owner), Some(repository), Some(token)) = (args.next(), args.next(), args.next())
    else {
        eprintln!("usage: fake-github OWNER REPO TOKEN");
        std::process::exit(2);
    };
    let github = sgr_test_support::FakeGitHub::start(&owner, &repository, &token)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", github.api_url())?;
    stdout.flush()?;
    drop(stdout);
    // Serve until stdin closes (the benchmark script holds it open).
    for line in std::io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
    }
    Ok(())
}
