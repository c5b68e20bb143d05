//! The build's log as a person reads it, buildx-like: one line when an
//! instruction starts, `[linux/amd64 build 2/5] RUN make`, one when it
//! ends, `[linux/amd64 build 2/5] DONE 1.2s, layer 3.4 MB` (or `CACHED`),
//! and a summary per platform. The texts are pure functions; the events
//! also carry the platform, stage and step as fields for `--log-format=json`.

use std::fmt;
use std::time::Duration;

use tracing::info;

use crate::platform::Platform;
use crate::progress::STEP_TARGET;
pub use crate::progress::{human_duration, human_size};

/// A stage as the Dockerfile names it: `FROM golang AS build` is `build`,
/// an unnamed stage its index.
pub fn stage_name(name: Option<&str>, index: usize) -> String {
    match name {
        Some(name) => name.to_string(),
        None => index.to_string(),
    }
}

/// One instruction of one stage for one platform: step `number` of
/// `total` (FROM is step 1, as buildx counts).
pub struct Step<'a> {
    pub platform: &'a Platform,
    pub stage: &'a str,
    pub number: usize,
    pub total: usize,
}

impl fmt::Display for Step<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{} {} {}/{}]",
            self.platform, self.stage, self.number, self.total
        )
    }
}

/// How a step ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepEnd {
    /// Taken from the layer cache.
    pub cached: bool,
    /// The compressed size of the layer it added, if it added one.
    pub layer_bytes: Option<u64>,
}

impl Step<'_> {
    /// The span of the step's work: in the text log, every line logged
    /// inside it (cache lookups, pulls, unpacking) carries the step's
    /// label; in JSON, its `spans` name the step.
    pub fn span(&self) -> tracing::Span {
        tracing::info_span!("step", step = self.number, steps = self.total)
    }

    /// One line a RUN step printed, for the text log: behind the step's
    /// label, as every other line of the step.
    pub fn output_text(&self, line: &str) -> String {
        format!("{self} {line}\n")
    }

    /// Logs the start of the step; `text` is the instruction as written
    /// (its first line, for a multi-line one).
    pub fn started(&self, text: &str) {
        let text = first_line(text);
        info!(
            target: STEP_TARGET,
            platform = %self.platform,
            stage = self.stage,
            step = self.number,
            steps = self.total,
            "{self} {text}"
        );
    }

    /// Logs the end of the step.
    pub fn finished(&self, end: StepEnd, elapsed: Duration) {
        info!(
            target: STEP_TARGET,
            platform = %self.platform,
            stage = self.stage,
            step = self.number,
            steps = self.total,
            cached = end.cached,
            duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            layer_bytes = end.layer_bytes,
            "{self} {}",
            end_text(end, elapsed)
        );
    }

    /// Logs one line a RUN step printed (for `--log-format=json`, where
    /// its output must be objects too).
    pub fn output(&self, line: &str) {
        info!(
            target: STEP_TARGET,
            platform = %self.platform,
            stage = self.stage,
            step = self.number,
            steps = self.total,
            output = true,
            "{line}"
        );
    }
}

/// The first line of an instruction, with ` …` when there is more.
fn first_line(text: &str) -> String {
    match text.split_once('\n') {
        Some((first, _)) => format!("{} …", first.trim_end()),
        None => text.to_string(),
    }
}

/// What follows the step's label when it ends.
pub fn end_text(end: StepEnd, elapsed: Duration) -> String {
    let mut text = match end.cached {
        true => "CACHED".to_string(),
        false => format!("DONE {}", human_duration(elapsed)),
    };
    if let Some(bytes) = end.layer_bytes {
        text.push_str(&format!(", layer {}", human_size(bytes)));
    }
    text
}

/// The closing line of one platform's image.
pub struct Summary<'a> {
    pub platform: &'a Platform,
    pub digest: &'a str,
    pub layers: usize,
    pub compressed_bytes: u64,
    /// Cache hits and misses, when the layer cache was on.
    pub cache: Option<(u64, u64)>,
    pub elapsed: Duration,
}

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}] image {}: {} layer{}, {} compressed",
            self.platform,
            self.digest,
            self.layers,
            if self.layers == 1 { "" } else { "s" },
            human_size(self.compressed_bytes),
        )?;
        if let Some((hits, misses)) = self.cache {
            write!(f, ", {hits} cache hits, {misses} cache misses")?;
        }
        write!(f, ", {}", human_duration(self.elapsed))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn stage_names_are_as_written() {
        assert_eq!(stage_name(Some("build"), 1), "build");
        assert_eq!(stage_name(Some("Base"), 0), "Base");
        assert_eq!(stage_name(None, 2), "2");
    }

    #[test]
    fn step_labels() {
        let platform: Platform = "linux/arm64".parse().unwrap();
        let step = Step {
            platform: &platform,
            stage: "build",
            number: 2,
            total: 5,
        };
        assert_eq!(step.to_string(), "[linux/arm64 build 2/5]");
    }

    #[test]
    fn end_texts() {
        let table = [
            (false, None, 0, "DONE 0.0s"),
            (false, Some(2_345_678), 1_250, "DONE 1.2s, layer 2.3 MB"),
            (true, Some(999), 40, "CACHED, layer 999 B"),
            (true, None, 40, "CACHED"),
            (false, Some(1_000), 61_000, "DONE 61.0s, layer 1.0 kB"),
        ];
        for (cached, layer_bytes, millis, want) in table {
            let end = StepEnd {
                cached,
                layer_bytes,
            };
            assert_eq!(end_text(end, Duration::from_millis(millis)), want);
        }
    }

    #[test]
    fn sizes() {
        let table = [
            (0, "0 B"),
            (999, "999 B"),
            (1_000, "1.0 kB"),
            (1_536, "1.5 kB"),
            (999_949, "999.9 kB"),
            (999_950, "1.0 MB"),
            (23_400_000, "23.4 MB"),
            (1_200_000_000, "1.2 GB"),
            (5_000_000_000_000_000, "5000.0 TB"),
        ];
        for (bytes, want) in table {
            assert_eq!(human_size(bytes), want, "{bytes}");
        }
    }

    #[test]
    fn first_lines() {
        assert_eq!(first_line("RUN make"), "RUN make");
        assert_eq!(first_line("RUN <<EOF\necho hi\nEOF"), "RUN <<EOF …");
    }

    #[test]
    fn summaries() {
        let platform: Platform = "linux/amd64".parse().unwrap();
        let mut summary = Summary {
            platform: &platform,
            digest: "sha256:abc",
            layers: 1,
            compressed_bytes: 2_100_000,
            cache: None,
            elapsed: Duration::from_millis(4_210),
        };
        assert_eq!(
            summary.to_string(),
            "[linux/amd64] image sha256:abc: 1 layer, 2.1 MB compressed, 4.2s"
        );
        summary.layers = 3;
        summary.cache = Some((2, 1));
        assert_eq!(
            summary.to_string(),
            "[linux/amd64] image sha256:abc: 3 layers, 2.1 MB compressed, 2 cache hits, 1 cache misses, 4.2s"
        );
    }
}
