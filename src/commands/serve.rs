//! `connector-runtime serve`: runs the server until SIGINT/SIGTERM.

use crate::config::ServeArgs;
use crate::server::Application;

/// Runs the server; returns the exit code.
pub fn run(args: ServeArgs) -> i32 {
    crate::telemetry::init(args.log_format);
    let system = actix_rt::System::new();
    system.block_on(async move {
        let app = match Application::build(args.clone()) {
            Ok(app) => app,
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        };
        app.reload_on_sighup();
        tracing::info!(listen = %args.listen, port = app.port(), "connector-runtime serving");
        match app.run_until_stopped().await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        }
    })
}
