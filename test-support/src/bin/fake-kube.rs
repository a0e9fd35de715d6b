//! The fake Kubernetes API server of the tests as a process, for
//! benchmarks: `fake-kube KUBECONFIG LINES BURST PAUSE_MS` writes a
//! kubeconfig for it, scripts the Job `bench` to write LINES log lines
//! (BURST at a time, `PAUSE_MS` apart, each ending in ` wall=<unix ns>`),
//! prints the server URL and serves until stdin closes. `LINES` of the form
//! `long:BYTES` makes one log line of BYTES bytes instead (carriage-return
//! progress output, as pip and downloads write without a terminal).

use std::io::{BufRead as _, Write as _};
use std::time::Duration;

use sgr_test_support::{FakeKube, PodScript};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kubeconfig, lines, burst, pause] = args.as_slice() else {
        return Err("usage: fake-kube KUBECONFIG LINES BURST PAUSE_MS".into());
    };
    let kube = FakeKube::start()?;
    std::fs::write(kubeconfig, kube.kubeconfig("bench"))?;
    let log: Vec<String> = if let Some(bytes) = lines.strip_prefix("long:") {
        let bytes: usize = bytes.parse()?;
        let unit = "downloading  42% |#######             |\r";
        vec![unit.repeat(bytes / unit.len() + 1)[..bytes].to_owned()]
    } else {
        let count: usize = lines.parse()?;
        (0..count)
            .map(|index| format!("bench line {index:07}"))
            .collect()
    };
    let mut script = PodScript::lines(log, 0);
    script.burst = burst.parse()?;
    script.pause = Duration::from_millis(pause.parse()?);
    script.wall_clock = true;
    kube.script("bench", vec![script]);
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", kube.url())?;
    stdout.flush()?;
    drop(stdout);
    for line in std::io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
    }
    Ok(())
}
