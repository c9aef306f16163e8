//! `suexec`: PHP that runs as `nobody`.
//!
//! When PHP scripts run as the web server's user, the mail they send is
//! `nobody`'s: it can't be traced to an account, so a hijacked contact form
//! or an uploaded mailer hides among every site on the server. The PHP
//! handler decides: `dso` (mod_php) always runs as the web server's user;
//! `cgi` and `fcgi` run as the account only with suEXEC; `suphp`, `lsapi`
//! and `fpm` always run as the account.
//!
//! The host reports suEXEC (`suexec`) before the PHP versions
//! (`php-handler`, one per version). The rule keeps suEXEC's state in the
//! host, so a PHP version read in a later batch is judged against it; when
//! suEXEC was never seen, it counts as not enabled (and says "unknown").
//! By default only the server's default PHP version is judged: the others
//! serve only the domains set to use them.

use serde::{Deserialize, Serialize};
use spamward_sdk::prelude::*;

/// `[rules.suexec]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Judge only the default PHP version (`false`: every installed one).
    pub only_default: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { only_default: true }
    }
}

/// The rule.
pub struct Suexec {
    settings: Settings,
    /// suEXEC as last seen (a cache of the host's `suexec` key).
    suexec: Option<bool>,
}

/// Host kv key of suEXEC's state: `on` or `off`.
const SUEXEC_KEY: &str = "suexec";

fn detail<'a>(s: &'a ServiceState, key: &str) -> Option<&'a str> {
    s.details
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

impl Suexec {
    fn suexec_state(&mut self) -> Option<bool> {
        if self.suexec.is_none() {
            self.suexec = host::kv_get(SUEXEC_KEY).map(|v| v == "on");
        }
        self.suexec
    }

    fn judge_php(&mut self, cx: &mut Context<'_>, s: &ServiceState) {
        let Some(version) = detail(s, "version").filter(|v| !v.is_empty()) else {
            return;
        };
        let default = detail(s, "default") == Some("true");
        if self.settings.only_default && !default {
            return;
        }
        let handler = detail(s, "handler").unwrap_or("").to_ascii_lowercase();
        let suexec = self.suexec_state();
        let suexec_shown = match suexec {
            Some(true) => "on",
            Some(false) => "off",
            None => "unknown",
        };
        let why = match handler.as_str() {
            "dso" => {
                "runs PHP inside the web server (dso), as nobody, whatever suEXEC says".to_owned()
            }
            "cgi" | "fcgi" if suexec != Some(true) => {
                format!("runs PHP as {handler} with suEXEC {suexec_shown}, so as nobody")
            }
            // suphp, lsapi, fpm, none, and cgi/fcgi with suEXEC.
            _ => return,
        };
        let which = if default {
            format!("default PHP {version}")
        } else {
            format!("PHP {version}")
        };
        cx.report(
            Finding::new(
                Severity::Warning,
                Target::Setting(format!("php-handler:{version}")),
                Action::Alert,
                format!("{which} {why}: its scripts' mail can't be traced to an account"),
            )
            .evidence("version", version)
            .evidence("handler", &handler)
            .evidence("default", default)
            .evidence("suexec", suexec_shown)
            .evidence(
                "fix",
                format!(
                    "WHM → MultiPHP Manager → PHP Handlers: suphp, lsapi or php-fpm for {version} (or enable mod_suexec with cgi/fcgi)"
                ),
            ),
        );
    }
}

impl Rule for Suexec {
    type Settings = Settings;

    fn info() -> Info {
        Info::new(
            "suexec",
            "PHP handlers that run scripts as nobody, so their mail can't be traced to an account",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .subscribe(EventKind::ServiceState)
        .action(Action::Alert)
        .setting(
            "only_default",
            "judge only the default PHP version (false: every installed one)",
        )
    }

    fn new(settings: Settings) -> Result<Self, String> {
        Ok(Suexec {
            settings,
            suexec: None,
        })
    }

    fn on_service_state(&mut self, cx: &mut Context<'_>, s: &ServiceState) {
        match s.name.as_str() {
            "suexec" => {
                self.suexec = Some(s.enabled);
                host::kv_set(SUEXEC_KEY, Some(if s.enabled { "on" } else { "off" }));
            }
            "php-handler" => self.judge_php(cx, s),
            _ => {}
        }
    }
}

spamward_sdk::export_rule!(Suexec);

#[cfg(test)]
mod tests {
    use super::*;
    use spamward_sdk::testing::{self, Harness, evidence};

    fn php(version: &str, handler: &str, default: bool) -> (i64, EventBody<'static>) {
        (
            testing::at("2024-05-01 10:00:00"),
            EventBody::ServiceState(ServiceState {
                name: "php-handler".into(),
                enabled: true,
                details: vec![
                    ("version".into(), testing::text(version)),
                    ("handler".into(), testing::text(handler)),
                    ("default".into(), default.to_string().into()),
                ],
            }),
        )
    }

    fn suexec(enabled: bool) -> (i64, EventBody<'static>) {
        (
            testing::at("2024-05-01 10:00:00"),
            EventBody::ServiceState(ServiceState {
                name: "suexec".into(),
                enabled,
                details: vec![(
                    "evidence".into(),
                    if enabled {
                        "/etc/apache2/conf.modules.d/190_mod_suexec.conf".into()
                    } else {
                        "none".into()
                    },
                )],
            }),
        )
    }

    #[test]
    fn default_php_as_dso_is_a_warning_with_the_fix() {
        let mut h = Harness::<Suexec>::new();
        let v = h.feed([
            suexec(true),
            php("ea-php74", "suphp", false),
            php("ea-php81", "dso", true),
        ]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].severity, Severity::Warning);
        assert_eq!(v[0].target, Target::Setting("php-handler:ea-php81".into()));
        assert_eq!(v[0].action, Action::Alert);
        assert!(
            v[0].summary.starts_with(
                "default PHP ea-php81 runs PHP inside the web server (dso), as nobody"
            ),
            "{}",
            v[0].summary
        );
        assert_eq!(evidence(&v[0], "suexec"), Some("on"));
        assert_eq!(
            evidence(&v[0], "fix"),
            Some(
                "WHM → MultiPHP Manager → PHP Handlers: suphp, lsapi or php-fpm for ea-php81 (or enable mod_suexec with cgi/fcgi)"
            )
        );
        assert_eq!(v[0].events, vec![3]);
    }

    #[test]
    fn cgi_without_suexec_is_a_warning_that_names_both() {
        let mut h = Harness::<Suexec>::new();
        let v = h.feed([suexec(false), php("ea-php82", "cgi", true)]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].target, Target::Setting("php-handler:ea-php82".into()));
        assert!(
            v[0].summary.contains("runs PHP as cgi with suEXEC off"),
            "{}",
            v[0].summary
        );
    }

    #[test]
    fn fcgi_with_suexec_unknown_is_a_warning() {
        let mut h = Harness::<Suexec>::new();
        let v = h.feed([php("ea-php82", "fcgi", true)]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(
            v[0].summary
                .contains("runs PHP as fcgi with suEXEC unknown"),
            "{}",
            v[0].summary
        );
        assert_eq!(evidence(&v[0], "suexec"), Some("unknown"));
    }

    #[test]
    fn cgi_and_fcgi_with_suexec_and_per_user_handlers_are_fine() {
        for handler in ["suphp", "lsapi", "fpm", "none", "cgi", "fcgi"] {
            let mut h = Harness::<Suexec>::new();
            let v = h.feed([suexec(true), php("ea-php81", handler, true)]);
            assert!(v.is_empty(), "{handler}: {v:?}");
        }
    }

    #[test]
    fn suexec_seen_in_an_earlier_batch_is_remembered_across_a_reload() {
        let mut h = Harness::<Suexec>::new();
        assert!(h.feed([suexec(true)]).is_empty());
        assert_eq!(
            h.host(|host| host.state.kv_get("suexec")),
            Some("on".to_owned())
        );
        // A reload builds a new rule instance; the host state stays.
        h.reload("{}").unwrap();
        assert!(h.feed([php("ea-php81", "cgi", true)]).is_empty());
    }

    #[test]
    fn other_versions_are_judged_only_when_asked() {
        let mut h = Harness::<Suexec>::new();
        let v = h.feed([suexec(false), php("ea-php74", "dso", false)]);
        assert!(v.is_empty(), "{v:?}");

        let mut h = Harness::<Suexec>::with_settings(r#"{"only_default": false}"#).unwrap();
        let v = h.feed([
            suexec(false),
            php("ea-php74", "dso", false),
            php("ea-php81", "fpm", true),
        ]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].target, Target::Setting("php-handler:ea-php74".into()));
        assert!(
            v[0].summary.starts_with("PHP ea-php74 "),
            "{}",
            v[0].summary
        );
    }

    #[test]
    fn other_services_and_versionless_handlers_are_ignored() {
        let mut h = Harness::<Suexec>::new();
        let (t, mut nameless) = php("", "dso", true);
        if let EventBody::ServiceState(s) = &mut nameless {
            s.details.retain(|(k, _)| k != "version");
        }
        let v = h.feed([
            (
                t,
                EventBody::ServiceState(ServiceState {
                    name: "mailman".into(),
                    enabled: true,
                    details: vec![("lists".into(), "0".into())],
                }),
            ),
            (t, nameless),
        ]);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn unknown_setting_is_refused_by_name() {
        let err = Harness::<Suexec>::with_settings(r#"{"only_defaults": true}"#)
            .err()
            .unwrap();
        assert!(err.contains("only_defaults"), "{err}");
    }
}
