//! spamward host (work in progress)
