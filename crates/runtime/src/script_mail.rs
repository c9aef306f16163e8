//! Which messages each web script sent, as the daemon saw them go by.
//!
//! `freeze-message` on a script needs its queued messages, and Exim's queue
//! listing does not say which script sent one: the log does (its `cwd=`
//! line, joined to the arrival by the parser) and so does the spool (cPanel's
//! `X-PHP-Script` header, in the queue snapshots). The daemon notes every
//! such message here before the rules see it, so a rule's verdict about a
//! script finds the messages that led to it.
//!
//! Memory is bounded whatever the input: the most recent
//! [`MAX_PER_SCRIPT`] messages of the [`MAX_SCRIPTS`] scripts that sent
//! last. Nothing here is saved: after a restart, a script's messages are
//! those the daemon has seen since (the spool's are seen again on the next
//! queue snapshot).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use spamward_model::EventBody;

/// Scripts remembered at most; the one that sent least recently goes.
pub const MAX_SCRIPTS: usize = 64;
/// Messages remembered per script at most; the oldest go.
pub const MAX_PER_SCRIPT: usize = 5_000;

/// The messages of one script, oldest first, each once.
#[derive(Debug, Default)]
struct Sent {
    /// When the script last sent, on [`ScriptMail`]'s own counter.
    last: u64,
    order: VecDeque<Arc<str>>,
    ids: HashSet<Arc<str>>,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct ScriptMail {
    scripts: HashMap<Box<str>, Sent>,
    /// Counts notes, to tell which script sent least recently.
    clock: u64,
}

impl ScriptMail {
    /// Notes the message `body` is about, when a script sent it.
    pub fn note(&mut self, body: &EventBody) {
        let (EventBody::MessageReceived(_) | EventBody::QueuedMessage(_)) = body else {
            return;
        };
        let (Some(script), Some(id)) = (
            body.identity().and_then(|i| i.script.as_deref()),
            body.message_id(),
        ) else {
            return;
        };
        self.clock += 1;
        if !self.scripts.contains_key(script) {
            if self.scripts.len() >= MAX_SCRIPTS {
                self.forget_least_recent();
            }
            self.scripts.insert(script.into(), Sent::default());
        }
        let sent = self.scripts.get_mut(script).expect("inserted above");
        sent.last = self.clock;
        if sent.ids.contains(id) {
            return;
        }
        if sent.order.len() >= MAX_PER_SCRIPT
            && let Some(oldest) = sent.order.pop_front()
        {
            sent.ids.remove(&oldest);
        }
        let id: Arc<str> = id.into();
        sent.order.push_back(id.clone());
        sent.ids.insert(id);
    }

    /// The ids of the messages `script` sent, oldest first.
    pub fn messages_of(&self, script: &str) -> Vec<String> {
        self.scripts
            .get(script)
            .map(|s| s.order.iter().map(|id| id.to_string()).collect())
            .unwrap_or_default()
    }

    fn forget_least_recent(&mut self) {
        let least = self
            .scripts
            .iter()
            .min_by_key(|(_, s)| s.last)
            .map(|(script, _)| script.clone());
        if let Some(script) = least {
            self.scripts.remove(&script);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spamward_model::{Identity, MessageReceived, QueuedMessage};

    fn arrival(id: &str, script: Option<&str>) -> EventBody {
        EventBody::MessageReceived(MessageReceived {
            message_id: id.to_owned().into(),
            identity: Identity {
                script: script.map(|s| s.to_owned().into()),
                ..Identity::default()
            },
            ..MessageReceived::default()
        })
    }

    fn queued(id: &str, script: &str) -> EventBody {
        EventBody::QueuedMessage(QueuedMessage {
            message_id: id.to_owned().into(),
            identity: Identity {
                script: Some(script.to_owned().into()),
                ..Identity::default()
            },
            ..QueuedMessage::default()
        })
    }

    #[test]
    fn a_scripts_messages_come_from_the_log_and_the_spool_each_once() {
        let mut mail = ScriptMail::default();
        let form = "/home/u/public_html/contact";
        let header = "forms.example/contact/send.php";
        mail.note(&arrival("1a", Some(form)));
        mail.note(&arrival("1b", None));
        mail.note(&arrival("1c", Some(form)));
        // Each queue snapshot lists the spool's messages again.
        for _ in 0..3 {
            mail.note(&queued("1a", header));
            mail.note(&queued("1d", header));
        }
        assert_eq!(mail.messages_of(form), ["1a", "1c"]);
        assert_eq!(mail.messages_of(header), ["1a", "1d"]);
        assert!(mail.messages_of("/home/v/public_html").is_empty());
    }

    #[test]
    fn memory_is_bounded_by_messages_and_by_scripts() {
        let mut mail = ScriptMail::default();
        for i in 0..MAX_PER_SCRIPT + 10 {
            mail.note(&arrival(&format!("m{i}"), Some("/home/u/x")));
        }
        let kept = mail.messages_of("/home/u/x");
        assert_eq!(kept.len(), MAX_PER_SCRIPT);
        assert_eq!(kept[0], "m10", "the oldest went");
        // The busy script keeps sending while others come and go: it stays.
        for i in 0..MAX_SCRIPTS * 2 {
            mail.note(&arrival(&format!("s{i}"), Some(&format!("/home/s{i}"))));
            mail.note(&arrival("m0-again", Some("/home/u/x")));
        }
        assert_eq!(mail.scripts.len(), MAX_SCRIPTS);
        assert!(!mail.messages_of("/home/u/x").is_empty());
        assert!(mail.messages_of("/home/s0").is_empty(), "forgotten");
        assert_eq!(
            mail.messages_of(&format!("/home/s{}", MAX_SCRIPTS * 2 - 1)),
            [format!("s{}", MAX_SCRIPTS * 2 - 1)]
        );
    }
}
