//! The [`Rule`] trait authors implement, and the small types it works with:
//! [`Info`] (what the rule says about itself), [`Context`] (the event being
//! judged and where findings go) and [`Finding`] (a verdict being built).

use std::fmt::Display;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::counter::{Counter, Crossing};
use crate::types::{
    Action, AuthFailure, Delivery, Event, EventBody, EventFilter, EventKind, Extension,
    GovernorAction, MailAlias, MailboxStats, MessageReceived, MessageState, QueuedMessage,
    Rejection, ServiceState, Setting, Severity, Subscription, Target, Timestamp, Verdict,
};

/// A spamward rule.
///
/// The host calls the per-kind methods for the event kinds listed in
/// [`Info::subscribe`], in event order, batch by batch. Windows, distinct
/// counts and key/value state belong in the host ([`crate::host`]): they
/// survive a rule reload and a trap, guest memory does not.
pub trait Rule: Sized + 'static {
    /// The rule's `[rules.<name>]` table. Missing keys take their
    /// `Default` values, so derive `Default` with real-server defaults and
    /// mark the struct `#[serde(default)]`.
    type Settings: Serialize + DeserializeOwned + Default;

    /// Name, summary, subscriptions, actions and setting descriptions.
    fn info() -> Info;

    /// Builds the rule from its settings; an `Err` names the bad setting.
    fn new(settings: Self::Settings) -> Result<Self, String>;

    /// Called for every delivered event; the default dispatches to the
    /// per-kind methods below.
    fn on_event(&mut self, cx: &mut Context<'_>, event: &Event<'_>) {
        match &event.body {
            EventBody::MessageReceived(m) => self.on_message_received(cx, m),
            EventBody::Delivery(d) => self.on_delivery(cx, d),
            EventBody::MessageCompleted(m) => self.on_message_completed(cx, m),
            EventBody::MessageFrozen(m) => self.on_message_frozen(cx, m),
            EventBody::Rejection(r) => self.on_rejection(cx, r),
            EventBody::AuthFailure(a) => self.on_auth_failure(cx, a),
            EventBody::GovernorAction(g) => self.on_governor_action(cx, g),
            EventBody::QueuedMessage(q) => self.on_queued_message(cx, q),
            EventBody::Setting(s) => self.on_setting(cx, s),
            EventBody::MailAlias(a) => self.on_mail_alias(cx, a),
            EventBody::MailboxStats(m) => self.on_mailbox_stats(cx, m),
            EventBody::ServiceState(s) => self.on_service_state(cx, s),
            EventBody::Extension(e) => match Crossing::from_extension(e) {
                Some(crossing) => self.on_counter(cx, &crossing),
                None => self.on_extension(cx, e),
            },
        }
    }

    /// The counters the host keeps for the rule, declared at each `init`
    /// (so settings may set their thresholds). Their crossings come to
    /// [`Rule::on_counter`]; the events they count need no subscription.
    fn counters(&self) -> Vec<Counter> {
        Vec::new()
    }

    /// One of the rule's [`Rule::counters`] reached its threshold (or a
    /// further step) on the event `cx` names.
    fn on_counter(&mut self, _cx: &mut Context<'_>, _crossing: &Crossing) {}

    /// A message was accepted.
    fn on_message_received(&mut self, _cx: &mut Context<'_>, _m: &MessageReceived<'_>) {}
    /// A delivery attempt ended.
    fn on_delivery(&mut self, _cx: &mut Context<'_>, _d: &Delivery<'_>) {}
    /// A message left the queue.
    fn on_message_completed(&mut self, _cx: &mut Context<'_>, _m: &MessageState<'_>) {}
    /// A message was frozen.
    fn on_message_frozen(&mut self, _cx: &mut Context<'_>, _m: &MessageState<'_>) {}
    /// The MTA refused something.
    fn on_rejection(&mut self, _cx: &mut Context<'_>, _r: &Rejection<'_>) {}
    /// An SMTP AUTH attempt failed.
    fn on_auth_failure(&mut self, _cx: &mut Context<'_>, _a: &AuthFailure<'_>) {}
    /// The panel's mail governor acted.
    fn on_governor_action(&mut self, _cx: &mut Context<'_>, _g: &GovernorAction<'_>) {}
    /// A message in the queue.
    fn on_queued_message(&mut self, _cx: &mut Context<'_>, _q: &QueuedMessage<'_>) {}
    /// A configuration setting.
    fn on_setting(&mut self, _cx: &mut Context<'_>, _s: &Setting<'_>) {}
    /// An alias line.
    fn on_mail_alias(&mut self, _cx: &mut Context<'_>, _a: &MailAlias<'_>) {}
    /// A mailbox's statistics.
    fn on_mailbox_stats(&mut self, _cx: &mut Context<'_>, _m: &MailboxStats<'_>) {}
    /// A service's state.
    fn on_service_state(&mut self, _cx: &mut Context<'_>, _s: &ServiceState<'_>) {}
    /// An event kind this interface version does not model.
    fn on_extension(&mut self, _cx: &mut Context<'_>, _e: &Extension<'_>) {}
}

/// What a rule says about itself; built with chained calls.
#[derive(Debug, Clone)]
pub struct Info {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) summary: String,
    pub(crate) subscriptions: Vec<Subscription>,
    pub(crate) actions: Vec<Action>,
    pub(crate) setting_docs: Vec<(String, String)>,
}

impl Info {
    /// A rule called `name` (kebab-case, unique) that does `summary`.
    pub fn new(name: &str, summary: &str) -> Self {
        Info {
            name: name.to_owned(),
            version: "0.0.0".to_owned(),
            summary: summary.to_owned(),
            subscriptions: Vec::new(),
            actions: Vec::new(),
            setting_docs: Vec::new(),
        }
    }

    /// The rule's own version; pass `env!("CARGO_PKG_VERSION")`.
    pub fn version(mut self, version: &str) -> Self {
        self.version = version.to_owned();
        self
    }

    /// Deliver every event of `kind` to the rule.
    pub fn subscribe(mut self, kind: EventKind) -> Self {
        self.subscriptions.push(crate::filter::all(kind));
        self
    }

    /// Deliver events of `kind` that match at least one of `filters` (see
    /// [`crate::filter`]); the host tests them, so the rule is not called for
    /// the rest.
    pub fn subscribe_where(
        mut self,
        kind: EventKind,
        filters: impl IntoIterator<Item = EventFilter>,
    ) -> Self {
        self.subscriptions
            .push(crate::filter::all(kind).any_of(filters));
        self
    }

    /// Deliver the events a subscription selects:
    /// `filter::all(kind).any_of(..).all_of(..).none_of(..)`.
    pub fn subscribe_matching(mut self, subscription: Subscription) -> Self {
        self.subscriptions.push(subscription);
        self
    }

    /// The rule may request `action`; the host refuses any other.
    pub fn action(mut self, action: Action) -> Self {
        if !self.actions.contains(&action) {
            self.actions.push(action);
        }
        self
    }

    /// Describe the setting `name` for `spamward rules info`.
    pub fn setting(mut self, name: &str, description: &str) -> Self {
        self.setting_docs
            .push((name.to_owned(), description.to_owned()));
        self
    }
}

/// The event being judged and the place findings go.
pub struct Context<'a> {
    pub(crate) event_id: u64,
    pub(crate) time: Timestamp,
    pub(crate) _event: std::marker::PhantomData<&'a ()>,
}

impl Context<'_> {
    /// Id of the current event (cite it as evidence).
    pub fn event_id(&self) -> u64 {
        self.event_id
    }

    /// Time of the current event, as written in the source.
    pub fn time(&self) -> Timestamp {
        self.time
    }

    /// Report a finding. If it cites no event, the current one is cited.
    /// It goes to the host at once, so it counts even if the rule fails
    /// later in the batch.
    pub fn report(&mut self, finding: Finding) {
        let mut verdict = finding.verdict;
        if verdict.events.is_empty() {
            verdict.events.push(self.event_id);
        }
        crate::host::report(verdict);
    }
}

/// A verdict under construction.
#[derive(Debug, Clone)]
pub struct Finding {
    verdict: Verdict,
}

impl Finding {
    /// A finding about `target` that requests `action`.
    pub fn new(
        severity: Severity,
        target: Target,
        action: Action,
        summary: impl Into<String>,
    ) -> Self {
        Finding {
            verdict: Verdict {
                severity,
                target,
                action,
                summary: summary.into(),
                evidence: Vec::new(),
                events: Vec::new(),
            },
        }
    }

    /// Add a named figure (`sent_24h` = `1204`).
    pub fn evidence(mut self, key: &str, value: impl Display) -> Self {
        self.verdict
            .evidence
            .push((key.to_owned(), value.to_string()));
        self
    }

    /// Cite an event by id.
    pub fn event(mut self, id: u64) -> Self {
        self.verdict.events.push(id);
        self
    }

    /// The verdict as built.
    pub fn into_verdict(self) -> Verdict {
        self.verdict
    }
}

/// The settings of a rule that takes none; any key given is an error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}
