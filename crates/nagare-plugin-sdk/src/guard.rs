//! Panic guards: every call from the host into plugin code runs inside [`catch`], so a panic
//! becomes a [`PluginError`] of kind [`ErrorKind::PANIC`] instead of killing the process
//! (a panic unwinding out of an `extern "C"` fn aborts, see `plugin-abi.md` §1.5).
//!
//! A process-wide panic hook (installed once, chaining to the previous one) records the panic
//! message and location of guarded panics in a thread-local and keeps them off stderr: the
//! host logs the returned error instead. Panics outside a guard go to the previous hook.

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use nagare_plugin_api::{ErrorKind, PluginError};

thread_local! {
    static GUARD_DEPTH: Cell<u32> = const { Cell::new(0) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

fn install_hook() {
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if GUARD_DEPTH.with(Cell::get) == 0 {
                previous(info);
                return;
            }
            let message = payload_message(info.payload());
            let text = match info.location() {
                Some(loc) => format!("{message} at {}:{}", loc.file(), loc.line()),
                None => message,
            };
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(text));
        }));
    });
}

fn payload_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

struct DepthGuard;

impl DepthGuard {
    fn enter() -> Self {
        GUARD_DEPTH.with(|d| d.set(d.get().saturating_add(1)));
        DepthGuard
    }
}

impl Drop for DepthGuard {
    fn drop(&mut self) {
        GUARD_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// Runs `f`, turning a panic into `PluginError { kind: PANIC, message: "<msg> at <file:line>" }`.
pub fn catch<T>(f: impl FnOnce() -> Result<T, PluginError>) -> Result<T, PluginError> {
    install_hook();
    let result = {
        let _depth = DepthGuard::enter();
        panic::catch_unwind(AssertUnwindSafe(f))
    };
    match result {
        Ok(r) => r,
        Err(payload) => {
            let recorded = LAST_PANIC.with(|p| p.borrow_mut().take());
            // Without our hook (someone replaced it) there is no location, only the payload.
            let message = recorded.unwrap_or_else(|| payload_message(payload.as_ref()));
            // Dropping a payload can itself panic; keep it from unwinding further.
            let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(payload)));
            Err(PluginError::new(ErrorKind::PANIC, message))
        }
    }
}

/// Like [`catch`] for calls that cannot report errors (drop, logging): a panic is swallowed
/// and `fallback` returned.
pub fn catch_or<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch(|| Ok(f())).unwrap_or(fallback)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(f: impl FnOnce() -> Result<u32, PluginError>, expect: Result<u32, (ErrorKind, &str)>) {
        let got = catch(f).map_err(|e| (e.kind, e.message.to_string()));
        match (got, expect) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err((kind, msg)), Err((ekind, eprefix))) => {
                assert_eq!(kind, ekind, "{msg}");
                assert!(
                    msg.starts_with(eprefix),
                    "{msg:?} should start with {eprefix:?}"
                );
            }
            (got, expect) => panic!("got {got:?}, expected {expect:?}"),
        }
    }

    #[test]
    fn table() {
        check(|| Ok(7), Ok(7));
        check(
            || Err(PluginError::new(ErrorKind::RETRYABLE, "later")),
            Err((ErrorKind::RETRYABLE, "later")),
        );
        check(|| panic!("boom"), Err((ErrorKind::PANIC, "boom at ")));
        check(
            || panic!("formatted {}", 42),
            Err((ErrorKind::PANIC, "formatted 42 at ")),
        );
        check(
            || std::panic::panic_any(3_u8),
            Err((ErrorKind::PANIC, "panic with a non-string payload")),
        );
    }

    #[test]
    fn message_names_this_file_and_line() {
        let line = line!() + 1;
        let e = catch::<()>(|| panic!("here")).err();
        let msg = e.map(|e| e.message.to_string()).unwrap_or_default();
        assert!(msg.ends_with(&format!("guard.rs:{line}")), "{msg}");
    }

    #[test]
    fn nested_guards_and_recovery() {
        let outer = catch(|| {
            let inner = catch::<()>(|| panic!("inner"));
            assert!(inner.is_err());
            Ok(1)
        });
        assert!(matches!(outer, Ok(1)));
        assert_eq!(catch_or(5, || panic!("x")), 5);
        assert_eq!(catch_or(5, || 6), 6);
    }
}
