//! Logging set-up: `--log-level`, `--log-format text|json` and `--log-outputs`.
//!
//! `json` writes one object per line in etcd's (zap's) shape: `level` (lower case), `ts`
//! (RFC 3339, UTC), `caller` (the module that logged), `msg`, then the event's fields as keys
//! (numbers and booleans as JSON values, everything else as strings). `text` is
//! tracing-subscriber's usual line.

use std::fmt;
use std::io::Write;
use std::sync::Arc;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::Visit;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// One place logs go.
#[derive(Debug, Clone)]
enum Target {
    /// Standard error (etcd's `default`).
    Stderr,
    /// Standard output.
    Stdout,
    /// A file, appended to.
    File(Arc<std::fs::File>),
}

/// Every `--log-outputs` target; each line goes to all of them.
#[derive(Debug, Clone)]
pub struct Outputs(Vec<Target>);

impl Outputs {
    /// Opens `outputs` (`default`/`stderr`, `stdout`, or file paths, created if missing).
    pub fn open(outputs: &[String]) -> Result<Self, String> {
        let mut targets = Vec::new();
        for output in outputs {
            targets.push(match output.as_str() {
                "" | "default" | "stderr" => Target::Stderr,
                "stdout" => Target::Stdout,
                path => Target::File(Arc::new(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(|e| format!("cannot open log output {path}: {e}"))?,
                )),
            });
        }
        if targets.is_empty() {
            targets.push(Target::Stderr);
        }
        Ok(Self(targets))
    }
}

/// Writes one formatted event to every target.
#[derive(Debug)]
pub struct OutputsWriter<'a>(&'a Outputs);

impl Write for OutputsWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let mut result = Ok(());
        for target in &self.0.0 {
            let written = match target {
                Target::Stderr => std::io::stderr().lock().write_all(buf),
                Target::Stdout => std::io::stdout().lock().write_all(buf),
                Target::File(file) => (&**file).write_all(buf),
            };
            if written.is_err() {
                result = written;
            }
        }
        result
    }

    fn flush(&mut self) -> std::io::Result<()> {
        for target in &self.0.0 {
            match target {
                Target::Stderr => std::io::stderr().flush()?,
                Target::Stdout => std::io::stdout().flush()?,
                Target::File(file) => (&**file).flush()?,
            }
        }
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Outputs {
    type Writer = OutputsWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        OutputsWriter(self)
    }
}

/// The tracing level of etcd's `--log-level` (`panic` and `fatal` log errors only).
pub fn level(name: &str) -> Level {
    match name {
        "debug" => Level::DEBUG,
        "warn" => Level::WARN,
        "error" | "panic" | "fatal" => Level::ERROR,
        _ => Level::INFO,
    }
}

/// Installs the global subscriber.
///
/// # Errors
///
/// A log output that cannot be opened.
pub fn init(level_name: &str, format: &str, outputs: &[String]) -> Result<(), String> {
    let writer = Outputs::open(outputs)?;
    let builder = tracing_subscriber::fmt()
        .with_max_level(level(level_name))
        .with_writer(writer)
        .with_ansi(false);
    if format == "json" {
        builder.event_format(EtcdJson).init();
    } else {
        builder.init();
    }
    Ok(())
}

/// The JSON event format (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct EtcdJson;

impl<S, N> FormatEvent<S, N> for EtcdJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut ts = String::new();
        SystemTime.format_time(&mut Writer::new(&mut ts))?;
        let mut fields = JsonFields::default();
        event.record(&mut fields);
        let level = match *meta.level() {
            Level::TRACE | Level::DEBUG => "debug",
            Level::INFO => "info",
            Level::WARN => "warn",
            Level::ERROR => "error",
        };
        let mut line = String::with_capacity(128 + fields.rest.len());
        line.push_str("{\"level\":\"");
        line.push_str(level);
        line.push_str("\",\"ts\":");
        push_json_str(&mut line, &ts);
        line.push_str(",\"caller\":");
        push_json_str(&mut line, meta.target());
        line.push_str(",\"msg\":");
        push_json_str(&mut line, fields.message.as_deref().unwrap_or(""));
        line.push_str(&fields.rest);
        line.push('}');
        writeln!(writer, "{line}")
    }
}

/// An event's fields as JSON members.
#[derive(Debug, Default)]
struct JsonFields {
    /// The `message` field.
    message: Option<String>,
    /// `,"key":value` for every other field.
    rest: String,
}

impl JsonFields {
    /// Appends `,"name":` (fields named like etcd's fixed keys get a `field.` prefix).
    fn key(&mut self, name: &str) {
        self.rest.push(',');
        if matches!(name, "level" | "ts" | "caller" | "msg") {
            push_json_str(&mut self.rest, &format!("field.{name}"));
        } else {
            push_json_str(&mut self.rest, name);
        }
        self.rest.push(':');
    }
}

impl Visit for JsonFields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_owned());
        } else {
            self.key(field.name());
            push_json_str(&mut self.rest, value);
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.key(field.name());
        self.rest.push_str(&value.to_string());
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.key(field.name());
        self.rest.push_str(&value.to_string());
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.key(field.name());
        self.rest.push_str(if value { "true" } else { "false" });
    }

    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        if value.is_finite() {
            self.key(field.name());
            self.rest.push_str(&value.to_string());
        } else {
            self.record_str(field, &value.to_string());
        }
    }
}

/// Appends `text` as a JSON string literal.
fn push_json_str(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        let mut s = String::new();
        push_json_str(&mut s, "a\"b\\c\nd\u{1}é");
        assert_eq!(s, "\"a\\\"b\\\\c\\nd\\u0001é\"");
    }

    #[test]
    fn json_lines_have_etcds_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        let outputs = Outputs::open(&[path.display().to_string()]).unwrap();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(Level::DEBUG)
            .with_writer(outputs)
            .with_ansi(false)
            .event_format(EtcdJson)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(index = 7u64, ok = true, name = %"m\"1", "ready to serve client requests");
            tracing::debug!(ratio = 0.5, "second");
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let first = lines[0];
        assert!(
            first.starts_with("{\"level\":\"info\",\"ts\":\""),
            "{first}"
        );
        assert!(
            first.ends_with(
                "\"caller\":\"xline_server::logging::tests\",\"msg\":\"ready to serve client requests\",\"index\":7,\"ok\":true,\"name\":\"m\\\"1\"}"
            ),
            "{first}"
        );
        assert!(lines[1].contains("\"level\":\"debug\""));
        assert!(lines[1].ends_with("\"msg\":\"second\",\"ratio\":0.5}"));
    }
}
