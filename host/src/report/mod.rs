//! Reports: what a person reads after a scan — the findings table and the
//! top senders ("View Relayers") summary — with text from inputs escaped for
//! the terminal.

mod findings;
pub mod terminal;
mod top_senders;

pub use findings::render_findings;
pub use top_senders::{SenderCounts, TopSenders};

/// Truncates `s` to `width` characters, marking the cut with `…`.
pub fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(width.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}
