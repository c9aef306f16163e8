//! Why a rule failed, as a value: the kinds an admin tells apart and the
//! engine acts on (a budget or memory overrun is the rule's, a full state
//! is its own quota), with the wording they read.

use std::fmt;

use spamward_contract::state::StateFull;
use wasmtime::Trap;

/// A rule's failure on a batch, while starting, or while loading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleFailure {
    /// Ran past its CPU budget for one batch.
    #[error("exceeded its CPU budget for one batch (interrupted)")]
    Budget,
    /// Tried to grow its memory past the cap.
    #[error("hit its memory cap ([engine] memory_limit_mb): {0}")]
    MemoryCap(String),
    /// Its host-side state reached its quota.
    #[error("{0}")]
    StateFull(StateFullMessage),
    /// A panic or abort in the rule.
    #[error("trapped: unreachable code reached (a panic or abort in the rule)")]
    Panic,
    /// Another trap (out-of-bounds access, stack overflow, ...).
    #[error("trapped: {0}")]
    Trap(String),
    /// `init` rejected its settings.
    #[error("rejected its settings: {0}")]
    Settings(String),
    /// It could not be instantiated or called (the engine's own words).
    #[error("{0}")]
    Call(String),
}

/// [`StateFull`] as carried in a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateFullMessage(pub StateFull);

impl fmt::Display for StateFullMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl RuleFailure {
    /// The failure an error from a call into the rule stands for.
    pub fn from_call(e: &wasmtime::Error) -> Self {
        if let Some(full) = e.downcast_ref::<StateFull>() {
            return RuleFailure::StateFull(StateFullMessage(*full));
        }
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => RuleFailure::Budget,
            Some(Trap::UnreachableCodeReached) => RuleFailure::Panic,
            Some(trap) => RuleFailure::Trap(trap.to_string()),
            None => {
                let text = format!("{e:#}");
                // The store's limiter refuses growth with an error of no
                // type of its own: its message is all there is to go on.
                if text.contains("forcing trap when growing memory") {
                    RuleFailure::MemoryCap(text)
                } else {
                    RuleFailure::Call(text)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_told_apart_by_type_not_by_their_text() {
        let full = StateFull {
            bytes: 10,
            keys: 2,
            limit: 1 << 20,
        };
        let f = RuleFailure::from_call(&wasmtime::Error::new(full));
        assert!(matches!(f, RuleFailure::StateFull(_)), "{f:?}");
        assert!(
            f.to_string().starts_with("its state is full: 2 keys"),
            "{f}"
        );
        assert_eq!(
            RuleFailure::from_call(&wasmtime::Error::new(Trap::Interrupt)),
            RuleFailure::Budget
        );
        assert_eq!(
            RuleFailure::from_call(&wasmtime::Error::new(Trap::UnreachableCodeReached)),
            RuleFailure::Panic
        );
        let other = RuleFailure::from_call(&wasmtime::Error::msg("no such export"));
        assert_eq!(other, RuleFailure::Call("no such export".into()));
    }
}
