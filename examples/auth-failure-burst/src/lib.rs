//! An example third-party rule, written the way a hosting company would
//! write its own: block client IPs that fail SMTP AUTH many times in a short
//! window — password guessing, the usual prelude to a stolen login.
//!
//! Build it with `cargo build --release --target wasm32-wasip2 -p
//! example-auth-failure-burst` and run it with `spamward scan --rules
//! target/wasm32-wasip2/release <logs>`.

use serde::{Deserialize, Serialize};
use spamward_sdk::prelude::*;

/// `[rules.auth-failure-burst]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Failures from one IP within the window that trip the rule.
    pub max_failures: u32,
    /// Window length in minutes.
    pub window_minutes: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_failures: 10,
            window_minutes: 10,
        }
    }
}

/// The rule.
pub struct AuthFailureBurst {
    settings: Settings,
}

impl Rule for AuthFailureBurst {
    type Settings = Settings;

    fn info() -> Info {
        Info::new(
            "auth-failure-burst",
            "Client IPs failing SMTP AUTH in bursts (password guessing)",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .subscribe(EventKind::AuthFailure)
        .action(Action::BlockIp)
        .setting(
            "max_failures",
            "failures from one IP within the window that trip the rule",
        )
        .setting("window_minutes", "window length in minutes")
    }

    fn new(settings: Settings) -> Result<Self, String> {
        Ok(AuthFailureBurst { settings })
    }

    fn on_auth_failure(&mut self, cx: &mut Context<'_>, a: &AuthFailure) {
        let Some(ip) = &a.client_ip else { return };
        let window = self.settings.window_minutes.max(1) * 60;
        let failures = host::window_add(&format!("ip:{ip}"), cx.time(), window, 1);
        let logins = host::distinct_add(
            &format!("logins:{ip}"),
            a.set_id.as_deref().unwrap_or("?"),
            cx.time(),
            window,
        );
        if failures == u64::from(self.settings.max_failures) {
            cx.report(
                Finding::new(
                    Severity::Warning,
                    Target::Ip(ip.to_string()),
                    Action::BlockIp,
                    format!(
                        "{failures} failed SMTP logins from {ip} in {} min ({logins} logins tried)",
                        window / 60
                    ),
                )
                .evidence("failures", failures)
                .evidence("logins_tried", logins),
            );
        }
    }
}

spamward_sdk::export_rule!(AuthFailureBurst);

#[cfg(test)]
mod tests {
    use super::*;
    use spamward_sdk::testing::{self, Harness};

    fn failure(ip: &str, login: &str) -> EventBody<'static> {
        EventBody::AuthFailure(AuthFailure {
            client_ip: Some(testing::text(ip)),
            client_host: None,
            authenticator: "dovecot_login".into(),
            set_id: Some(testing::text(login)),
            reason: None,
        })
    }

    #[test]
    fn burst_from_one_ip_is_reported_once() {
        let mut h = Harness::<AuthFailureBurst>::new();
        let t = testing::at("2024-05-01 10:00:00");
        let v = h.feed((0..15).map(|i| (t + i * 10, failure("203.0.113.9", &format!("user{i}")))));
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].target, Target::Ip("203.0.113.9".into()));
        assert!(v[0].summary.contains("10 logins tried"), "{}", v[0].summary);
    }

    #[test]
    fn slow_failures_stay_under_the_window() {
        let mut h = Harness::<AuthFailureBurst>::new();
        let t = testing::at("2024-05-01 10:00:00");
        let v = h.feed((0..30).map(|i| (t + i * 120, failure("203.0.113.9", "admin"))));
        assert!(v.is_empty(), "{v:?}");
    }
}
