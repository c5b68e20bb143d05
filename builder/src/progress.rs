//! Pull and push progress (`--progress`): on a terminal, a live bar per
//! blob (bytes, rate) that disappears when the blob is done; otherwise,
//! and for `--log-format=json`, one log line per blob once it is done,
//! with its size and time. The decision is [`choose`], a pure function;
//! the CLI installs the mode once with [`install`], and a library user
//! who installs nothing gets the plain lines.

use std::io::Write;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The target of the build's step lines (`build::step_log`) and blob
/// lines (this module), whose fields repeat their message: text shows the
/// message alone.
pub const STEP_TARGET: &str = "kiln::step";

/// Whether the process logs JSON objects, as the CLI installed it.
static JSON_LINES: OnceLock<bool> = OnceLock::new();

/// Records whether stderr is a stream of JSON objects; the logger's
/// installer calls it once.
pub fn set_json_lines(json: bool) {
    let _ = JSON_LINES.set(json);
}

/// Whether stderr is a stream of JSON objects: then a RUN step's output
/// and the final error are logged as events rather than written as text.
pub fn json_lines() -> bool {
    JSON_LINES.get() == Some(&true)
}

/// Seconds with one decimal, as buildx prints them: `0.0s`, `12.3s`.
pub fn human_duration(elapsed: Duration) -> String {
    format!("{:.1}s", elapsed.as_secs_f64())
}

/// Bytes in decimal units with one decimal above a kilobyte: `512 B`,
/// `1.5 kB`, `23.4 MB`, `1.2 GB` (buildx's units).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 999.95 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `--progress`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub enum Progress {
    /// Bars when stderr is a terminal and the log is text, else plain.
    #[default]
    Auto,
    /// One line per blob pulled or pushed.
    Plain,
    /// Live bars, also when stderr does not look like a terminal.
    Tty,
}

/// What the build shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Plain,
    Bars,
}

/// The mode for `--progress`, whether stderr is a terminal, and whether
/// the log is JSON (whose stream only holds objects: never bars).
pub fn choose(progress: Progress, stderr_is_terminal: bool, json_log: bool) -> Mode {
    match (progress, json_log) {
        (_, true) | (Progress::Plain, _) => Mode::Plain,
        (Progress::Tty, false) => Mode::Bars,
        (Progress::Auto, false) if stderr_is_terminal => Mode::Bars,
        (Progress::Auto, false) => Mode::Plain,
    }
}

static BARS: OnceLock<MultiProgress> = OnceLock::new();

/// Sets the process's mode; call once, before anything is transferred.
pub fn install(mode: Mode) {
    if mode == Mode::Bars {
        let _ = BARS.set(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
    }
}

/// Writes `bytes` to stderr with the bars (if any) out of the way: log
/// lines and RUN output go through here.
pub fn write_stderr(bytes: &[u8]) -> std::io::Result<()> {
    let write = || std::io::stderr().lock().write_all(bytes);
    match BARS.get() {
        Some(bars) => bars.suspend(write),
        None => write(),
    }
}

/// A `tracing-subscriber` writer that goes through [`write_stderr`].
pub struct StderrWriter;

impl Write for StderrWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        write_stderr(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Which way a blob goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Pull,
    Push,
}

/// One blob being pulled or pushed.
pub struct Transfer {
    direction: Direction,
    label: String,
    size: u64,
    started: Instant,
    bar: Option<ProgressBar>,
}

impl Transfer {
    /// Starts showing blob `digest` of `size` bytes going to or from
    /// `repository`.
    pub fn start(direction: Direction, digest: &str, size: u64, repository: &str) -> Transfer {
        let label = format!("{} {}", short_digest(digest), repository);
        let bar = BARS.get().map(|bars| {
            let bar = bars.add(ProgressBar::new(size));
            let verb = verb(direction, false);
            let template = format!(
                "{verb} {{msg}} {{wide_bar}} {{decimal_bytes}}/{{decimal_total_bytes}} {{decimal_bytes_per_sec}}"
            );
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style);
            }
            bar.set_message(label.clone());
            bar
        });
        Transfer {
            direction,
            label,
            size,
            started: Instant::now(),
            bar,
        }
    }

    /// Its bar, to count bytes from a stream that must own what it uses.
    pub fn bar(&self) -> Option<ProgressBar> {
        self.bar.clone()
    }

    /// `bytes` more went through.
    pub fn advance(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    /// The blob is complete: its bar goes, its line is logged.
    pub fn finish(self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        tracing::info!(
            target: STEP_TARGET,
            bytes = self.size,
            "{}",
            done_line(
                self.direction,
                &self.label,
                self.size,
                self.started.elapsed()
            )
        );
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        // A failed transfer leaves no bar behind.
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn verb(direction: Direction, done: bool) -> &'static str {
    match (direction, done) {
        (Direction::Pull, false) => "pulling",
        (Direction::Pull, true) => "pulled",
        (Direction::Push, false) => "pushing",
        (Direction::Push, true) => "pushed",
    }
}

/// `sha256:0123456789ab` (the first 12 hex digits, as docker shows them).
fn short_digest(digest: &str) -> &str {
    let end = digest
        .find(':')
        .map_or(digest.len(), |colon| colon + 1 + 12)
        .min(digest.len());
    &digest[..end]
}

/// The plain line of a finished blob.
pub fn done_line(direction: Direction, label: &str, size: u64, elapsed: Duration) -> String {
    format!(
        "{} blob {label}: {} in {}",
        verb(direction, true),
        human_size(size),
        human_duration(elapsed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mode_follows_the_flag_the_terminal_and_the_log_format() {
        use Progress::*;
        let table = [
            // (--progress, stderr is a terminal, JSON log) → mode
            (Auto, true, false, Mode::Bars),
            (Auto, false, false, Mode::Plain),
            (Auto, true, true, Mode::Plain),
            (Plain, true, false, Mode::Plain),
            (Plain, false, false, Mode::Plain),
            (Tty, false, false, Mode::Bars),
            (Tty, true, false, Mode::Bars),
            (Tty, true, true, Mode::Plain),
            (Tty, false, true, Mode::Plain),
        ];
        for (progress, terminal, json, want) in table {
            assert_eq!(
                choose(progress, terminal, json),
                want,
                "{progress:?} terminal={terminal} json={json}"
            );
        }
    }

    #[test]
    fn done_lines() {
        let table = [
            (
                Direction::Pull,
                "sha256:0123456789ab 127.0.0.1:5000/busybox",
                1_058_427,
                300,
                "pulled blob sha256:0123456789ab 127.0.0.1:5000/busybox: 1.1 MB in 0.3s",
            ),
            (
                Direction::Push,
                "sha256:abc r",
                175,
                0,
                "pushed blob sha256:abc r: 175 B in 0.0s",
            ),
        ];
        for (direction, label, size, millis, want) in table {
            assert_eq!(
                done_line(direction, label, size, Duration::from_millis(millis)),
                want
            );
        }
    }

    #[test]
    fn short_digests() {
        assert_eq!(
            short_digest("sha256:0123456789abcdef0123"),
            "sha256:0123456789ab"
        );
        assert_eq!(short_digest("sha256:abc"), "sha256:abc");
        assert_eq!(short_digest("nocolon"), "nocolon");
    }
}
