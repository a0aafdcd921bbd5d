//! `connector-runtime serve`: runs the server until SIGINT/SIGTERM.
//!
//! Shutdown. The first SIGINT or SIGTERM starts a graceful shutdown: the listener closes (new
//! connections are refused), idle keep-alive connections are closed, and requests in flight
//! get up to `--shutdown-timeout-secs` to finish; then the process exits 0. A request still
//! running at that deadline is cut off (its connection closes without an answer) and the exit
//! status is still 0. A second SIGINT/SIGTERM during the drain, or SIGQUIT at any time, stops
//! at once: connections in flight are closed and the exit status is 1.

use actix_web::dev::ServerHandle;
use tokio::signal::unix::{signal, Signal, SignalKind};

use super::Failure;
use crate::config::ServeArgs;
use crate::server::Application;

/// Runs the server; returns the exit code.
pub(crate) fn run(args: ServeArgs) -> Result<i32, Failure> {
    crate::telemetry::init(args.log_format);
    let system = actix_rt::System::new();
    system.block_on(async move {
        // Installed before the registry loads, so a signal during start-up is not lost (it
        // stops the server as soon as it runs) and never kills the process half-way.
        let signals = StopSignals::install()
            .map_err(|e| Failure::new(1, format!("cannot install the signal handlers: {e}")))?;
        let app = Application::build(args.clone())
            .await
            .map_err(|e| Failure::new(1, e))?;
        app.reload_on_sighup();
        tracing::info!(listen = %args.listen, port = app.port(), "connector-runtime serving");
        serve_until_signalled(app, signals, args.shutdown_timeout_secs).await
    })
}

/// The signals that stop the server. Once installed they no longer terminate the process.
pub(crate) struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
    quit: Signal,
}

impl StopSignals {
    /// Installs the handlers; must run inside the runtime.
    pub(crate) fn install() -> std::io::Result<Self> {
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            quit: signal(SignalKind::quit())?,
        })
    }

    /// Waits for the next one and names it.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.quit.recv() => "SIGQUIT",
        }
    }
}

/// Serves `app` until a signal stops it (see the module docs); returns the exit code.
pub(crate) async fn serve_until_signalled(
    app: Application,
    mut signals: StopSignals,
    drain_timeout_secs: u64,
) -> Result<i32, Failure> {
    let handle: ServerHandle = app.handle();
    // Resolves only when the operator wants to stop at once.
    let stop_now = async move {
        let first = signals.next().await;
        if first == "SIGQUIT" {
            return first;
        }
        tracing::info!(
            signal = first,
            drain_timeout_secs,
            "shutting down: no new connections, runs in flight may finish (send the signal again to stop at once)"
        );
        // The command is sent at once; the returned future only reports completion.
        actix_rt::spawn(handle.stop(true));
        signals.next().await
    };
    tokio::select! {
        result = app.run_until_stopped() => match result {
            Ok(()) => {
                tracing::info!("connector-runtime stopped");
                Ok(0)
            }
            Err(e) => Err(Failure::new(1, e)),
        },
        signal = stop_now => {
            // Dropping the running server closes its listener and stops the workers at once.
            tracing::warn!(signal, "stopping at once: runs in flight are cut off");
            Ok(1)
        }
    }
}
