//! Logs on stderr, filtered by `--verbosity` (or `RUST_LOG`), formatted by
//! `--log-format`. stdout stays free for output a script may capture.
//!
//! Text lines carry the message and its fields only: no module paths, no
//! span names (a step's line says its platform, stage and step itself).
//! JSON lines are one object each, and everything kiln writes to stderr
//! during a build goes through them (see [`json_lines`]).

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::Registry;
use tracing_subscriber::fmt;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// `--verbosity`: kaniko's (logrus) level names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Verbosity {
    Panic,
    Fatal,
    Error,
    #[value(alias = "warning")]
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum LogFormat {
    // Plain text without colours, safe for CI logs.
    #[default]
    Text,
    // Text with ANSI colours, even when stderr is not a terminal.
    Color,
    // One JSON object per line.
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("invalid RUST_LOG \"{value}\"")]
    RustLog {
        value: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("could not install the logger")]
    Install(#[source] tracing_subscriber::util::TryInitError),
}

/// The crates whose logs `--verbosity` is about; everyone else's (HTTP,
/// TLS, registry client) stays at warnings unless `trace` asks for it all.
const OWN_TARGETS: &[&str] = &["kiln", "kiln_builder"];

/// The filter directives a verbosity stands for.
pub fn filter_directives(verbosity: Verbosity) -> String {
    let (own, others) = match verbosity {
        // There is no panic or fatal level: those messages are errors.
        Verbosity::Panic | Verbosity::Fatal | Verbosity::Error => ("error", "error"),
        Verbosity::Warn => ("warn", "warn"),
        Verbosity::Info => ("info", "warn"),
        Verbosity::Debug => ("debug", "warn"),
        Verbosity::Trace => ("trace", "debug"),
    };
    let mut directives = others.to_string();
    for target in OWN_TARGETS {
        directives.push_str(&format!(",{target}={own}"));
    }
    directives
}

/// The filter to use: `RUST_LOG` when it is set (for developers who need
/// one module's traces), else the verbosity's.
pub fn make_filter(
    verbosity: Verbosity,
    rust_log: Option<&str>,
) -> Result<EnvFilter, LoggingError> {
    match rust_log.filter(|value| !value.trim().is_empty()) {
        Some(value) => EnvFilter::try_new(value).map_err(|source| LoggingError::RustLog {
            value: value.to_string(),
            source,
        }),
        None => EnvFilter::try_new(filter_directives(verbosity)).map_err(|source| {
            LoggingError::RustLog {
                value: filter_directives(verbosity),
                source,
            }
        }),
    }
}

/// The text line of an event: `[time] [LEVEL] message fields`, the level
/// shown only when it is not INFO (buildx prints no level either).
struct TextLine {
    timestamps: bool,
    ansi: bool,
}

impl<S, N> FormatEvent<S, N> for TextLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        if self.timestamps {
            fmt::time::SystemTime.format_time(&mut writer)?;
            writer.write_char(' ')?;
        }
        let level = *event.metadata().level();
        if level != Level::INFO {
            let (colour, name) = level_style(level);
            match self.ansi {
                true => write!(writer, "\x1b[{colour}m{name}\x1b[0m ")?,
                false => write!(writer, "{name} ")?,
            }
        }
        let mut text = String::new();
        if event.metadata().target() == STEP_TARGET {
            // Its fields are for machines; the message says it all.
            let mut message = MessageOnly(String::new());
            event.record(&mut message);
            text = message.0;
        } else {
            ctx.field_format()
                .format_fields(Writer::new(&mut text), event)?;
        }
        // A line logged inside a step (or a platform's build) says which,
        // as the step's own lines do, unless it already does.
        if !text.starts_with('[')
            && let Some(label) = ctx.event_scope().and_then(|scope| {
                let mut label = Label::default();
                for span in scope.from_root() {
                    if let Some(inner) = span.extensions().get::<Label>() {
                        label.merge(inner);
                    }
                }
                label.text()
            })
        {
            write!(writer, "{label} ")?;
        }
        writer.write_str(&text)?;
        // At debug and trace, the spans' fields say where it happened.
        if level > Level::INFO
            && let Some(scope) = ctx.event_scope()
        {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    write!(writer, " {fields}")?;
                }
            }
        }
        writeln!(writer)
    }
}

/// Where a span is in the build: the platform, stage and step its fields
/// name (`platform`, `stage`, `step`, `steps`), kept by [`LabelLayer`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Label {
    platform: Option<String>,
    stage: Option<String>,
    step: Option<u64>,
    steps: Option<u64>,
}

impl Label {
    /// Inner spans refine outer ones.
    fn merge(&mut self, inner: &Label) {
        self.platform = inner.platform.clone().or(self.platform.take());
        self.stage = inner.stage.clone().or(self.stage.take());
        self.step = inner.step.or(self.step);
        self.steps = inner.steps.or(self.steps);
    }

    /// `[linux/amd64 build 2/5]`, `[linux/amd64 build]`, `[linux/amd64]`.
    fn text(&self) -> Option<String> {
        let platform = self.platform.as_deref()?;
        Some(match (&self.stage, self.step, self.steps) {
            (Some(stage), Some(step), Some(steps)) => {
                format!("[{platform} {stage} {step}/{steps}]")
            }
            (Some(stage), _, _) => format!("[{platform} {stage}]"),
            (None, _, _) => format!("[{platform}]"),
        })
    }
}

impl tracing::field::Visit for Label {
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        match field.name() {
            "step" => self.step = Some(value),
            "steps" => self.steps = Some(value),
            _ => {}
        }
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        if let Ok(value) = u64::try_from(value) {
            self.record_u64(field, value);
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "platform" => self.platform = Some(value.to_string()),
            "stage" => self.stage = Some(value.to_string()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        // `%platform` arrives as Debug of a Display wrapper: its text.
        self.record_str(field, &format!("{value:?}"));
    }
}

/// Keeps each span's [`Label`] in its extensions for [`TextLine`].
struct LabelLayer;

impl<S> Layer<S> for LabelLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut label = Label::default();
        attrs.record(&mut label);
        if label != Label::default()
            && let Some(span) = ctx.span(id)
        {
            span.extensions_mut().insert(label);
        }
    }
}

pub use crate::progress::STEP_TARGET;

struct MessageOnly(String);

impl tracing::field::Visit for MessageOnly {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0.push_str(&format!("{value:?}"));
        }
    }
}

/// A level's ANSI colour code and its name as printed.
fn level_style(level: Level) -> (u8, &'static str) {
    match level {
        Level::ERROR => (31, "ERROR"),
        Level::WARN => (33, "WARN"),
        Level::INFO => (32, "INFO"),
        Level::DEBUG => (34, "DEBUG"),
        Level::TRACE => (35, "TRACE"),
    }
}

fn format_layer(format: LogFormat, timestamps: bool) -> Box<dyn Layer<Registry> + Send + Sync> {
    // Through the progress bars, which step aside for each line.
    let base = fmt::layer().with_writer(|| crate::progress::StderrWriter);
    match (format, timestamps) {
        (LogFormat::Json, true) => base.json().with_target(false).boxed(),
        (LogFormat::Json, false) => base.json().with_target(false).without_time().boxed(),
        (text, _) => base
            .with_ansi(text == LogFormat::Color)
            .event_format(TextLine {
                timestamps,
                ansi: text == LogFormat::Color,
            })
            .boxed(),
    }
}

pub use crate::progress::json_lines;

/// Installs the process-wide logger. Call once, before anything logs.
pub fn init_logging(
    verbosity: Verbosity,
    format: LogFormat,
    timestamps: bool,
) -> Result<(), LoggingError> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = make_filter(verbosity, rust_log.as_deref())?;
    tracing_subscriber::registry()
        .with(format_layer(format, timestamps))
        .with(LabelLayer)
        .with(filter)
        .try_init()
        .map_err(LoggingError::Install)?;
    crate::progress::set_json_lines(format == LogFormat::Json);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_maps_to_directives() {
        let table = [
            (Verbosity::Panic, "error,kiln=error,kiln_builder=error"),
            (Verbosity::Fatal, "error,kiln=error,kiln_builder=error"),
            (Verbosity::Error, "error,kiln=error,kiln_builder=error"),
            (Verbosity::Warn, "warn,kiln=warn,kiln_builder=warn"),
            (Verbosity::Info, "warn,kiln=info,kiln_builder=info"),
            (Verbosity::Debug, "warn,kiln=debug,kiln_builder=debug"),
            (Verbosity::Trace, "debug,kiln=trace,kiln_builder=trace"),
        ];
        for (verbosity, want) in table {
            assert_eq!(filter_directives(verbosity), want, "{verbosity:?}");
            let filter = make_filter(verbosity, None).map(|f| f.to_string());
            let parsed = EnvFilter::try_new(want).map(|f| f.to_string());
            assert_eq!(filter.ok(), parsed.ok(), "{verbosity:?}");
        }
    }

    #[test]
    fn rust_log_overrides_verbosity() {
        let table = [
            (Some("reqwest=trace"), Ok("reqwest=trace".to_string())),
            // EnvFilter prints the most specific directives first.
            (Some(""), Ok("kiln_builder=info,kiln=info,warn".to_string())),
            (
                Some("  "),
                Ok("kiln_builder=info,kiln=info,warn".to_string()),
            ),
            (None, Ok("kiln_builder=info,kiln=info,warn".to_string())),
            (
                Some("kiln=loud"),
                Err("invalid RUST_LOG \"kiln=loud\"".to_string()),
            ),
        ];
        for (rust_log, want) in table {
            let got = make_filter(Verbosity::Info, rust_log)
                .map(|f| f.to_string())
                .map_err(|e| e.to_string());
            assert_eq!(got, want, "{rust_log:?}");
        }
    }
}
