//! The `connector-runtime` binary: parses the command line and runs the subcommand.

use clap::Parser;

/// Many small, short-lived allocations per run on several worker threads: mimalloc keeps
/// them thread-local (see the note in Cargo.toml).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's option number of `purge_delay` (mimalloc.h, `mi_option_purge_delay`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() {
    // Freed pages go back to the OS after 1 s instead of 10 ms: a busy server reuses them at
    // once, and re-faulting them was ~14% of CPU per run at 1,000 concurrent runs.
    // SAFETY: called before any other thread exists; the option is a plain integer.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 1000) };
    let cli = connector_runtime::commands::Cli::parse();
    // Templates render on the command's thread and on the server's worker threads, which
    // actix spawns with the standard library's default stack unless `RUST_MIN_STACK` says
    // otherwise: give them the stack their fuel can use (see `render_stack_bytes`).
    let stack = connector_runtime::template::engine::render_stack_bytes(cli.template_fuel());
    if std::env::var_os("RUST_MIN_STACK").is_none() {
        // SAFETY: no other thread exists yet, so nothing reads the environment concurrently.
        unsafe { std::env::set_var("RUST_MIN_STACK", stack.to_string()) };
    }
    let command = std::thread::Builder::new()
        .name("main".into())
        .stack_size(stack)
        .spawn(move || connector_runtime::commands::run(cli))
        .expect("the command thread starts");
    std::process::exit(command.join().unwrap_or(101));
}
