//! The glue [`crate::export_rule!`] expands to: keeps the rule instance,
//! turns `describe`/`init`/`on-events` calls into [`Rule`] calls.
//!
//! The same functions drive the native [`crate::testing::Harness`], so a
//! rule under `cargo test` goes through the code path it takes in the host.

use std::any::Any;
use std::cell::RefCell;

use crate::rule::{Context, Rule};
use crate::types::{RuleInfo, SettingSpec};

thread_local! {
    // One rule per component; natively, one per test thread.
    static RULE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// `describe`: the rule's info with its settings and their defaults.
pub fn describe<R: Rule>() -> RuleInfo {
    let info = R::info();
    let defaults = serde_json::to_value(R::Settings::default()).unwrap_or_default();
    let settings = match defaults {
        serde_json::Value::Object(map) => map
            .into_iter()
            .map(|(name, value)| SettingSpec {
                description: info
                    .setting_docs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, d)| d.clone())
                    .unwrap_or_default(),
                default_json: value.to_string(),
                name,
            })
            .collect(),
        _ => Vec::new(),
    };
    RuleInfo {
        name: info.name,
        version: info.version,
        summary: info.summary,
        subscriptions: info.subscriptions,
        actions: info.actions,
        settings,
        sdk_version: crate::SDK_VERSION.to_owned(),
    }
}

/// `describe` as the component export returns it.
pub fn describe_for_host<R: Rule>() -> crate::bindings::spamward::rule::types::RuleInfo {
    crate::boundary::rule_info(describe::<R>())
}

/// `init`: parse settings (missing keys take defaults) and build the rule.
pub fn init<R: Rule>(settings_json: &str) -> Result<(), String> {
    // A second `set_logger` fails harmlessly; the first one wins.
    let _ = ::log::set_logger(&crate::host::HostLogger);
    ::log::set_max_level(::log::LevelFilter::Trace);
    let json = if settings_json.trim().is_empty() {
        "{}"
    } else {
        settings_json
    };
    let de = &mut serde_json::Deserializer::from_str(json);
    let settings: R::Settings = serde_path_to_error::deserialize(de).map_err(|e| {
        // Name the setting; the position in the JSON the host built means
        // nothing to whoever wrote spamward.toml.
        let inner = e.inner().to_string();
        let reason = inner
            .rsplit_once(" at line ")
            .map_or(inner.as_str(), |(reason, _)| reason);
        match e.path().to_string().as_str() {
            "." | "" => format!("invalid settings: {reason}"),
            path => format!("`{path}`: {reason}"),
        }
    })?;
    let rule = R::new(settings)?;
    for counter in rule.counters() {
        crate::host::declare_counter(counter.spec())
            .map_err(|e| format!("counter {:?}: {e}", counter.spec().name))?;
    }
    RULE.with(|cell| *cell.borrow_mut() = Some(Box::new(rule)));
    Ok(())
}

/// `on-events`: run the rule over an encoded batch, in order.
///
/// Each event is announced to the host (`judging`) before it is judged, and
/// each verdict handed over (`report`) as it is made, so a trap on one event
/// costs only that event.
///
/// # Panics
/// On a batch that does not decode (the host and the rule disagree on the
/// interface): in wasm that is a trap, which the host reports against the
/// rule with this message.
pub fn on_events<R: Rule>(batch: &[u8]) {
    let initialised = RULE.with(|cell| cell.borrow().is_some());
    if !initialised && let Err(e) = init::<R>("{}") {
        crate::host::log(
            crate::host::LogLevel::Error,
            &format!("default settings rejected: {e}"),
        );
        return;
    }
    RULE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let rule = slot
            .as_mut()
            .and_then(|b| b.downcast_mut::<R>())
            .expect("the rule stored by init is of this type");
        for event in crate::event::decode(batch) {
            let event = event.unwrap_or_else(|e| panic!("spamward-sdk: {e}"));
            crate::host::judging(event.id);
            let mut cx = Context {
                event_id: event.id,
                time: event.time,
                _event: std::marker::PhantomData,
            };
            rule.on_event(&mut cx, &event);
        }
    });
}

/// Drop the rule instance (the harness starts each test fresh).
pub(crate) fn reset() {
    RULE.with(|cell| *cell.borrow_mut() = None);
}
