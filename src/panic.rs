//! The panic hook: a panic becomes an ERROR event, shipped before the process goes on dying.

use std::backtrace::Backtrace;
use std::panic::PanicHookInfo;
use std::time::Duration;

use crate::Shipper;

/// How long the hook waits for the broker to confirm the panic event (and everything logged
/// before it).
pub const PANIC_FLUSH_DEADLINE: Duration = Duration::from_secs(1);

/// Installs a panic hook that logs each panic as an ERROR event — the panic message as
/// `message` and `error.message`, `error.type` = `panic`, the panic's location as
/// `log.origin.file.*`, the panicking thread, a backtrace in `error.stack_trace`, inside the
/// span that was current (so with its `trace.id`) — then flushes `shipper` for at most 1 s (the panicking thread, maybe a runtime worker, is held no longer) and
/// calls the hook that was installed before (by default the one printing to stderr).
///
/// [`init`](crate::init) calls it unless `panic_hook` is `false`; call it yourself after
/// [`Builder::build`](crate::Builder::build) if you want it there. Calling it while panicking
/// does nothing.
pub fn install_panic_hook(shipper: Shipper) {
    if std::thread::panicking() {
        return;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        log_panic(info);
        // The shipper's own threads cannot wait for themselves.
        let on_shipper = std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("logcollect-shipper") || n.starts_with("lapin-"));
        if !on_shipper {
            let _ = shipper.flush(PANIC_FLUSH_DEADLINE);
        }
        previous(info);
    }));
}

/// The panic message: the payload when it is a string (`panic!("…")`), else a placeholder.
fn message<'a>(info: &'a PanicHookInfo<'_>) -> &'a str {
    let payload = info.payload();
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.as_str()
    } else {
        "Box<dyn Any>"
    }
}

fn log_panic(info: &PanicHookInfo<'_>) {
    let message = message(info);
    let backtrace = Backtrace::force_capture().to_string();
    match info.location() {
        Some(location) => tracing::event!(
            target: "panic",
            tracing::Level::ERROR,
            error.message = message,
            "error.type" = "panic",
            error.stack_trace = backtrace.as_str(),
            log.origin.file.name = location.file(),
            log.origin.file.line = location.line(),
            panic.column = location.column(),
            "{message}"
        ),
        None => tracing::event!(
            target: "panic",
            tracing::Level::ERROR,
            error.message = message,
            "error.type" = "panic",
            error.stack_trace = backtrace.as_str(),
            "{message}"
        ),
    }
}
