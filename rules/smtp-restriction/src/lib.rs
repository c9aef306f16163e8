//! `smtp-restriction`: outgoing SMTP open to every local user.
//!
//! WHM's "SMTP Restrictions" (`smtpmailgidonly=1` in `cpanel.config`) lets
//! only root, the MTA and Mailman connect to remote mail servers. Without it
//! a PHP mailer or a compromised account can talk SMTP straight to the
//! Internet, past Exim, its logs and its sending limits — mail no other rule
//! will ever see. The rule reports the setting when it is `0` or unset.
//!
//! It judges only what it saw: a server whose `cpanel.config` has no
//! `smtpmailgidonly` line (or no `cpanel.config` at all) is not judged.

use spamward_sdk::prelude::*;

/// The rule.
pub struct SmtpRestriction;

/// The `cpanel.config` key of WHM's SMTP Restrictions.
const KEY: &str = "smtpmailgidonly";

impl Rule for SmtpRestriction {
    type Settings = NoSettings;

    fn info() -> Info {
        Info::new(
            "smtp-restriction",
            "Outgoing SMTP not restricted to root, exim and mailman (WHM's SMTP Restrictions off)",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .subscribe(EventKind::Setting)
        .action(Action::Alert)
    }

    fn new(_settings: NoSettings) -> Result<Self, String> {
        Ok(SmtpRestriction)
    }

    fn on_setting(&mut self, cx: &mut Context<'_>, s: &Setting) {
        if s.source != "cpanel.config" || s.scope.is_some() || s.key != KEY {
            return;
        }
        // A bare key (`None`) and `key=` are how cPanel writes "off" too.
        let value = s.value.as_deref().map(str::trim);
        let shown = match value {
            None => "unset",
            Some("") => "empty",
            Some("0") => "0",
            Some(_) => return,
        };
        cx.report(
            Finding::new(
                Severity::Warning,
                Target::Setting(format!("cpanel.config:{KEY}")),
                Action::Alert,
                "outgoing SMTP is not restricted to root, exim and mailman: any local user or script can send mail around Exim and its limits",
            )
            .evidence(KEY, shown)
            .evidence("fix", "WHM → Security Center → SMTP Restrictions: Enable"),
        );
    }
}

spamward_sdk::export_rule!(SmtpRestriction);

#[cfg(test)]
mod tests {
    use super::*;
    use spamward_sdk::testing::{self, Harness, evidence};

    fn setting(
        source: &str,
        scope: Option<&str>,
        key: &str,
        value: Option<&str>,
    ) -> (i64, EventBody<'static>) {
        (
            testing::at("2024-05-01 10:00:00"),
            EventBody::Setting(testing::setting(source, scope, key, value)),
        )
    }

    #[test]
    fn restriction_off_is_a_warning_on_the_setting_with_the_fix() {
        let mut h = Harness::<SmtpRestriction>::new();
        let v = h.feed([
            setting("cpanel.config", None, "nobodyspam", Some("1")),
            setting("cpanel.config", None, "smtpmailgidonly", Some("0")),
        ]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].severity, Severity::Warning);
        assert_eq!(
            v[0].target,
            Target::Setting("cpanel.config:smtpmailgidonly".into())
        );
        assert_eq!(v[0].action, Action::Alert);
        assert!(
            v[0].summary
                .starts_with("outgoing SMTP is not restricted to root, exim and mailman"),
            "{}",
            v[0].summary
        );
        assert_eq!(evidence(&v[0], "smtpmailgidonly"), Some("0"));
        assert_eq!(
            evidence(&v[0], "fix"),
            Some("WHM → Security Center → SMTP Restrictions: Enable")
        );
        assert_eq!(v[0].events, vec![2]);
    }

    #[test]
    fn an_unset_or_empty_key_is_off_too() {
        let mut h = Harness::<SmtpRestriction>::new();
        let v = h.feed([setting("cpanel.config", None, "smtpmailgidonly", None)]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(evidence(&v[0], "smtpmailgidonly"), Some("unset"));
        let v = h.feed([setting("cpanel.config", None, "smtpmailgidonly", Some(" "))]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(evidence(&v[0], "smtpmailgidonly"), Some("empty"));
    }

    #[test]
    fn restriction_on_is_quiet() {
        let mut h = Harness::<SmtpRestriction>::new();
        let v = h.feed([setting("cpanel.config", None, "smtpmailgidonly", Some("1"))]);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn a_server_without_the_key_is_not_judged() {
        let mut h = Harness::<SmtpRestriction>::new();
        let v = h.feed([
            setting("cpanel.config", None, "nobodyspam", Some("0")),
            setting("cpanel.config", None, "maxemailsperhour", None),
        ]);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn the_same_key_elsewhere_is_not_the_server_setting() {
        let mut h = Harness::<SmtpRestriction>::new();
        let v = h.feed([
            setting("cpanel-users", Some("bob"), "smtpmailgidonly", Some("0")),
            setting("other.conf", None, "smtpmailgidonly", Some("0")),
        ]);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn any_setting_is_refused() {
        let err = Harness::<SmtpRestriction>::with_settings(r#"{"enabled_value": 1}"#)
            .err()
            .unwrap();
        assert!(err.contains("enabled_value"), "{err}");
    }
}
