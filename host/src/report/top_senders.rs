//! Top senders: per account, login, sender domain and script, how many
//! emails were sent and how many deliveries failed or deferred — the figures
//! WHM's "View Relayers" shows, computed by the host from the events.
//!
//! Only mail with a local sending identity counts (a login, a local user, an
//! owning account or a script): mail arriving from the Internet is not
//! relayed by this server.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::fit;
use spamward_model::{DeliveryOutcome, Event, EventBody, Identity, SYSTEM_USERS};

/// What is counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// Hosting account (owner or local user).
    Account,
    /// SMTP AUTH login.
    AuthId,
    /// Envelope sender domain.
    Domain,
    /// Script or directory.
    Script,
}

impl Dimension {
    const ALL: [Dimension; 4] = [
        Dimension::Account,
        Dimension::AuthId,
        Dimension::Domain,
        Dimension::Script,
    ];

    fn title(self) -> &'static str {
        match self {
            Dimension::Account => "account",
            Dimension::AuthId => "auth id",
            Dimension::Domain => "domain",
            Dimension::Script => "script",
        }
    }
}

/// Counts for one sender.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SenderCounts {
    /// Emails sent (recipients of accepted messages).
    pub sent: u64,
    /// Deliveries that failed.
    pub failed: u64,
    /// Deliveries that were deferred.
    pub deferred: u64,
}

/// The running tally.
#[derive(Debug, Default)]
pub struct TopSenders {
    counts: HashMap<(Dimension, String), SenderCounts>,
}

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct SenderRow {
    /// What it is counted by.
    pub by: Dimension,
    /// Who.
    pub sender: String,
    /// Figures.
    #[serde(flatten)]
    pub counts: SenderCounts,
}

impl TopSenders {
    /// An empty tally.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one event.
    pub fn observe(&mut self, event: &Event) {
        match &event.body {
            EventBody::MessageReceived(m) if !m.bounce => {
                let n = m.recipients.len().max(1) as u64;
                self.add(&m.identity, |c| c.sent += n);
            }
            EventBody::Delivery(d) => match d.outcome {
                DeliveryOutcome::Failed => self.add(&d.identity, |c| c.failed += 1),
                DeliveryOutcome::Deferred => self.add(&d.identity, |c| c.deferred += 1),
                DeliveryOutcome::Delivered => {}
            },
            _ => {}
        }
    }

    fn add(&mut self, id: &Identity, f: impl Fn(&mut SenderCounts)) {
        let account = id.owner.as_deref().or(id
            .local_user
            .as_deref()
            .filter(|u| !SYSTEM_USERS.contains(u)));
        let local = account.is_some() || id.auth_id.is_some() || id.script.is_some();
        if !local {
            return;
        }
        let keys = [
            (Dimension::Account, account),
            (Dimension::AuthId, id.auth_id.as_deref()),
            (Dimension::Domain, id.sender_domain.as_deref()),
            (Dimension::Script, id.script.as_deref()),
        ];
        for (dim, key) in keys {
            if let Some(key) = key {
                f(self.counts.entry((dim, key.to_owned())).or_default());
            }
        }
    }

    /// The top `n` of each dimension, by emails sent then failures.
    pub fn top(&self, n: usize) -> Vec<SenderRow> {
        let mut rows = Vec::new();
        for dim in Dimension::ALL {
            let mut of_dim: Vec<_> = self.counts.iter().filter(|((d, _), _)| *d == dim).collect();
            of_dim.sort_by(|a, b| {
                (b.1.sent, b.1.failed + b.1.deferred, &a.0.1).cmp(&(
                    a.1.sent,
                    a.1.failed + a.1.deferred,
                    &b.0.1,
                ))
            });
            rows.extend(of_dim.into_iter().take(n).map(|((d, s), c)| SenderRow {
                by: *d,
                sender: s.clone(),
                counts: *c,
            }));
        }
        rows
    }

    /// Renders the top `n` of each dimension as tables.
    pub fn render(&self, n: usize) -> String {
        let rows = self.top(n);
        let mut out = String::new();
        if rows.is_empty() {
            out.push_str("Top senders: no locally submitted mail seen.\n");
            return out;
        }
        out.push_str("Top senders (locally submitted mail):\n");
        for dim in Dimension::ALL {
            let of_dim: Vec<_> = rows.iter().filter(|r| r.by == dim).collect();
            if of_dim.is_empty() {
                continue;
            }
            let _ = writeln!(
                out,
                "\n  {:<48} {:>8} {:>8} {:>8}",
                format!("BY {}", dim.title().to_uppercase()),
                "SENT",
                "FAILED",
                "DEFERRED"
            );
            for r in of_dim {
                let _ = writeln!(
                    out,
                    "  {:<48} {:>8} {:>8} {:>8}",
                    fit(&r.sender, 48),
                    r.counts.sent,
                    r.counts.failed,
                    r.counts.deferred
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spamward_model::{Delivery, MessageReceived, Origin, Timestamp};

    fn event(body: EventBody) -> Event {
        let origin = Origin {
            file: "t".into(),
            line: 1,
        };
        Event::new(Timestamp::naive(0), &origin, body)
    }

    #[test]
    fn counts_local_senders_and_their_failures_only() {
        let mut t = TopSenders::new();
        let mut id = Identity::default();
        id.set_sender("info@shop.example");
        id.auth_id = Some("info@shop.example".into());
        t.observe(&event(EventBody::MessageReceived(MessageReceived {
            message_id: "a".into(),
            identity: id.clone(),
            recipients: vec!["x@r.example".into(), "y@r.example".into()],
            ..Default::default()
        })));
        t.observe(&event(EventBody::Delivery(Delivery {
            message_id: "a".into(),
            outcome: DeliveryOutcome::Failed,
            recipient: "x@r.example".into(),
            router: None,
            transport: None,
            remote_host: None,
            remote_ip: None,
            error: None,
            identity: id,
        })));
        let mut inbound = Identity::default();
        inbound.set_sender("someone@gmail.example");
        inbound.client_ip = Some("192.0.2.1".into());
        t.observe(&event(EventBody::MessageReceived(MessageReceived {
            message_id: "b".into(),
            identity: inbound,
            ..Default::default()
        })));
        let rows = t.top(10);
        assert_eq!(rows.len(), 2, "{rows:?}");
        let auth = rows.iter().find(|r| r.by == Dimension::AuthId).unwrap();
        assert_eq!(
            auth.counts,
            SenderCounts {
                sent: 2,
                failed: 1,
                deferred: 0
            }
        );
        assert!(rows.iter().all(|r| r.sender != "gmail.example"));
    }
}
