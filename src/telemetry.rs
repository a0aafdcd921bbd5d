//! Logging setup: `tracing` to stderr as text or JSON, filtered by `RUST_LOG`
//! (default `info`); a traced request's lines carry its `trace_id` (docs/spec.md §13).

use std::fmt;
use std::io::IsTerminal;

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber; later calls do nothing.
pub(crate) fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: a log file or collector gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .map_event_format(|inner| WithTraceId { inner, json: false })
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .map_event_format(|inner| WithTraceId { inner, json: true })
            .try_init(),
    };
}

/// The lines of `inner`, with the trace id of the request being polled
/// (`trace::current_trace_id`) when there is one: a top-level `"trace_id"` member of a JSON
/// line, a `trace_id=` field at the end of a text line. Such a line is formatted into a
/// string first (without colours), then written.
struct WithTraceId<E> {
    inner: E,
    json: bool,
}

impl<S, N, E> FormatEvent<S, N> for WithTraceId<E>
where
    E: FormatEvent<S, N>,
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Some(trace_id) = crate::trace::current_trace_id() else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        if self.json {
            match line.strip_prefix('{') {
                Some(rest) if rest.starts_with('}') => {
                    write!(writer, "{{\"trace_id\":\"{trace_id}\"{rest}")
                }
                Some(rest) => write!(writer, "{{\"trace_id\":\"{trace_id}\",{rest}"),
                None => writer.write_str(&line),
            }
        } else {
            let body = line.strip_suffix('\n').unwrap_or(&line);
            writeln!(writer, "{body} trace_id={trace_id}")
        }
    }
}
