//! SIGINT and SIGTERM during a long run: the first one asks the reader to
//! stop, so what was found so far is still reported (marked partial); a
//! second one ends the process at once, as an impatient user expects.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::flag;

/// The stop request a signal makes.
#[derive(Debug, Clone)]
pub struct Interrupt {
    stop: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
}

impl Interrupt {
    /// Installs the handlers.
    pub fn install() -> io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let signal = Arc::new(AtomicUsize::new(0));
        for sig in [SIGINT, SIGTERM] {
            // Registered first, so it sees the flag as the earlier signal
            // left it: the second signal exits, the first only asks.
            flag::register_conditional_shutdown(sig, 128 + sig, stop.clone())?;
            flag::register_usize(sig, signal.clone(), sig as usize)?;
            flag::register(sig, stop.clone())?;
        }
        Ok(Interrupt { stop, signal })
    }

    /// The flag the reader stops on.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// The signal received, if any.
    pub fn received(&self) -> Option<i32> {
        match self.signal.load(Ordering::Relaxed) {
            0 => None,
            sig => i32::try_from(sig).ok(),
        }
    }

    /// Asks the reader to stop without a signal (the output was closed).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
