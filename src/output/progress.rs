//! Build progress: one indicatif spinner per image on a terminal (bytes of
//! context sent, step n of m), one plain `image | line` per output line
//! otherwise, nothing with `-q`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::Printer;

/// Progress of several builds.
pub struct BuildProgress<'a> {
    printer: &'a Printer,
    bars: Option<MultiProgress>,
}

/// Progress of one image.
pub struct ImageProgress<'a> {
    printer: &'a Printer,
    image: String,
    bar: Option<ProgressBar>,
    /// Context bytes sent so far, updated by the sender.
    pub sent: Arc<AtomicU64>,
    step: String,
}

impl<'a> BuildProgress<'a> {
    /// Bars when `interactive` (stderr is a terminal and messages are wanted), lines otherwise.
    #[must_use]
    pub fn new(printer: &'a Printer, interactive: bool) -> Self {
        Self {
            printer,
            bars: interactive.then(MultiProgress::new),
        }
    }

    /// Start following `image`.
    #[must_use]
    pub fn image(&self, image: &str) -> ImageProgress<'a> {
        let bar = self.bars.as_ref().map(|bars| {
            let bar = bars.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix:.bold} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(image.to_owned());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        ImageProgress {
            printer: self.printer,
            image: image.to_owned(),
            bar,
            sent: Arc::new(AtomicU64::new(0)),
            step: String::new(),
        }
    }
}

impl ImageProgress<'_> {
    /// One line of build output.
    pub fn line(&mut self, line: &str) {
        match &self.bar {
            None => self.printer.note(&format!("{} | {line}", self.image)),
            Some(bar) => {
                if let Some(step) = step_of(line) {
                    self.step = format!("step {step}");
                }
                let sent = self.sent.load(Ordering::Relaxed);
                bar.set_message(format!("{} sent, {}", human_bytes(sent), self.step));
            }
        }
    }

    /// A status message (pushes): shown on the bar, dropped without one.
    pub fn status(&self, text: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(text.to_owned());
        }
    }

    /// Done, with this final message.
    pub fn done(&self, text: &str) {
        if let Some(bar) = &self.bar {
            bar.finish_with_message(text.to_owned());
        }
    }

    /// The build ended.
    pub fn finish(&self, result: &str) {
        if let Some(bar) = &self.bar {
            bar.finish_with_message(format!(
                "{} sent, {result}",
                human_bytes(self.sent.load(Ordering::Relaxed))
            ));
        }
    }
}

/// `1.2 MB`-style sizes.
#[must_use]
pub fn human_bytes(bytes: u64) -> String {
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{}.{} kB", bytes / 1_000, bytes % 1_000 / 100),
        1_000_000..1_000_000_000 => {
            format!("{}.{} MB", bytes / 1_000_000, bytes % 1_000_000 / 100_000)
        }
        _ => format!(
            "{}.{} GB",
            bytes / 1_000_000_000,
            bytes % 1_000_000_000 / 100_000_000
        ),
    }
}

/// The step a build output line starts: "Step 2/5 : COPY …" (classic) or "#7 [2/5] COPY …"
/// (BuildKit; not a step's output such as "#7 1.23 [1/4] Resolving packages").
fn step_of(line: &str) -> Option<&str> {
    line.strip_prefix("Step ")
        .and_then(|rest| rest.split_whitespace().next())
        .or_else(|| {
            let (number, rest) = line.strip_prefix('#')?.split_once(" [")?;
            let (step, _) = rest.split_once(']')?;
            (!number.is_empty()
                && number.bytes().all(|byte| byte.is_ascii_digit())
                && step.contains('/'))
            .then_some(step)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_read_from_either_builder_and_not_from_step_output() {
        assert_eq!(step_of("Step 2/5 : COPY . /x"), Some("2/5"));
        assert_eq!(step_of("#7 [2/5] RUN make"), Some("2/5"));
        assert_eq!(step_of("#12 [stage 1/3] FROM x"), Some("stage 1/3"));
        assert_eq!(step_of("#7 1.234 [1/4] Resolving packages..."), None);
        assert_eq!(step_of("# [1/2] x"), None);
        assert_eq!(step_of("#7 [internal] load build definition"), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_234_567), "1.2 MB");
        assert_eq!(human_bytes(1_100_000_000), "1.1 GB");
    }
}
