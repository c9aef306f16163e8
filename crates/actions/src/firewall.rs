//! `block-ip`: spamward's own nftables table, or the admin's command
//! template (CSF, ipset, iptables, ...).
//!
//! The table is `inet spamward`: two sets, `blocked4` and `blocked6`,
//! whose elements time out by themselves (so a block outlives neither its
//! grant nor a spamward that died), and an input chain that drops their
//! traffic. spamward creates it and touches nothing else of the firewall.

use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use spamward_contract::verdict::Target;
use spamward_pipeline::config::{ActionsConfig, BlockIp};
use spamward_pipeline::policy::ledger::Job;

use crate::command;

/// How long a firewall command may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The table spamward owns.
pub const TABLE: &str = "spamward";

/// How IPs are blocked on this server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Firewall {
    /// `nft`, through this command line.
    Nft(Vec<String>),
    /// The admin's templates; without an unblock template a block ends by
    /// its own time-out.
    Template {
        /// Blocks `{ip}`.
        block: Vec<String>,
        /// Lifts the block of `{ip}`.
        unblock: Vec<String>,
    },
}

impl Firewall {
    /// The firewall `[actions]` names.
    pub fn new(config: &ActionsConfig) -> Self {
        match &config.block_ip {
            BlockIp::Named(_) => Firewall::Nft(config.nft_command.clone()),
            BlockIp::Template(block) => Firewall::Template {
                block: block.clone(),
                unblock: config.unblock_ip.clone(),
            },
        }
    }

    /// Creates spamward's table, sets and chain when they are missing
    /// (and puts its two drop rules back), leaving the elements in place.
    pub fn prepare(&self) -> Result<(), String> {
        let Firewall::Nft(_) = self else {
            return Ok(());
        };
        let steps: [&[&str]; 7] = [
            &["add", "table", "inet", TABLE],
            &[
                "add",
                "set",
                "inet",
                TABLE,
                "blocked4",
                "{ type ipv4_addr; flags timeout; }",
            ],
            &[
                "add",
                "set",
                "inet",
                TABLE,
                "blocked6",
                "{ type ipv6_addr; flags timeout; }",
            ],
            &[
                "add",
                "chain",
                "inet",
                TABLE,
                "input",
                "{ type filter hook input priority -10; policy accept; }",
            ],
            &["flush", "chain", "inet", TABLE, "input"],
            &[
                "add",
                "rule",
                "inet",
                TABLE,
                "input",
                "ip",
                "saddr",
                "@blocked4",
                "drop",
            ],
            &[
                "add",
                "rule",
                "inet",
                TABLE,
                "input",
                "ip6",
                "saddr",
                "@blocked6",
                "drop",
            ],
        ];
        for args in steps {
            self.nft(args)?;
        }
        Ok(())
    }

    /// Blocks the job's IP for its seconds (or until lifted).
    pub fn block(&self, job: &Job) -> Result<(), String> {
        let ip = ip_of(&job.target)?;
        match self {
            Firewall::Nft(_) => {
                let timeout = job
                    .seconds
                    .map_or_else(String::new, |s| format!(" timeout {}s", s.max(1)));
                self.nft(&[
                    "add",
                    "element",
                    "inet",
                    TABLE,
                    set_of(ip),
                    &format!("{{ {ip}{timeout} }}"),
                ])
            }
            Firewall::Template { block, .. } => run_template(block, ip, job),
        }
    }

    /// Lifts the block of the job's IP; one already gone (timed out) is
    /// lifted.
    pub fn unblock(&self, job: &Job) -> Result<(), String> {
        let ip = ip_of(&job.target)?;
        match self {
            Firewall::Nft(_) => {
                let element = format!("{{ {ip} }}");
                match self.nft(&["delete", "element", "inet", TABLE, set_of(ip), &element]) {
                    Err(e) if e.contains("No such file or directory") => Ok(()),
                    other => other,
                }
            }
            Firewall::Template { unblock, .. } if unblock.is_empty() => Ok(()),
            Firewall::Template { unblock, .. } => run_template(unblock, ip, job),
        }
    }

    fn nft(&self, args: &[&str]) -> Result<(), String> {
        let Firewall::Nft(nft) = self else {
            unreachable!("nft commands only for the nft firewall")
        };
        let (program, prefix) = nft.split_first().ok_or("no nft command")?;
        let mut cmd = Command::new(program);
        cmd.args(prefix).args(args);
        command::run(&mut cmd, TIMEOUT)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The IP a `block-ip` job names (an IPv4 address written as IPv6 is the
/// IPv4 one).
fn ip_of(target: &Target) -> Result<IpAddr, String> {
    let Target::Ip(text) = target else {
        return Err(format!("block-ip acts on an ip, not a {}", target.kind()));
    };
    let ip: IpAddr = text
        .parse()
        .map_err(|_| format!("{text:?} is not an IP address"))?;
    Ok(match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    })
}

fn set_of(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "blocked4",
        IpAddr::V6(_) => "blocked6",
    }
}

/// Runs a template with `{ip}`, `{seconds}` (0: until lifted), `{summary}`
/// and `{rule}` filled in, each argument as it is (no shell).
fn run_template(template: &[String], ip: IpAddr, job: &Job) -> Result<(), String> {
    let fill = |arg: &String| {
        arg.replace("{ip}", &ip.to_string())
            .replace("{seconds}", &job.seconds.unwrap_or(0).to_string())
            .replace("{summary}", &job.summary)
            .replace("{rule}", &job.rule)
    };
    let (program, args) = template.split_first().ok_or("an empty command template")?;
    let mut cmd = Command::new(fill(program));
    cmd.args(args.iter().map(fill));
    command::run(&mut cmd, TIMEOUT)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use spamward_contract::verdict::Action;
    use spamward_pipeline::policy::ledger::Step;

    fn job(ip: &str, seconds: Option<u64>) -> Job {
        Job {
            id: 1,
            step: Step::Run,
            target: Target::Ip(ip.into()),
            action: Action::BlockIp,
            seconds,
            summary: "192.0.2.7 probes for an open relay; \"quoted\" $(not run)".into(),
            rule: "open-relay".into(),
            memo: None,
            messages: Vec::new(),
        }
    }

    #[test]
    fn a_template_gets_each_value_as_one_argument_and_no_shell() {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("calls");
        let recorder = |verb: &str| {
            vec![
                "/bin/sh".to_owned(),
                "-c".to_owned(),
                format!(
                    "for a in \"$@\"; do printf '%s|' \"$a\"; done >> {}; echo >> {}",
                    record.display(),
                    record.display()
                ),
                verb.to_owned(),
                "{ip}".to_owned(),
                "{seconds}".to_owned(),
                "spamward: {summary}".to_owned(),
            ]
        };
        let fw = Firewall::Template {
            block: recorder("block"),
            unblock: recorder("unblock"),
        };
        fw.block(&job("::ffff:192.0.2.7", Some(3600))).unwrap();
        fw.unblock(&job("192.0.2.7", None)).unwrap();
        let calls = std::fs::read_to_string(&record).unwrap();
        assert_eq!(
            calls,
            "192.0.2.7|3600|spamward: 192.0.2.7 probes for an open relay; \"quoted\" $(not run)|\n\
             192.0.2.7|0|spamward: 192.0.2.7 probes for an open relay; \"quoted\" $(not run)|\n"
        );
        let no_undo = Firewall::Template {
            block: recorder("block"),
            unblock: vec![],
        };
        no_undo.unblock(&job("192.0.2.7", None)).unwrap();
        let e = fw.block(&job("not-an-ip", None)).unwrap_err();
        assert_eq!(e, "\"not-an-ip\" is not an IP address");
    }

    /// spamward's table in a network namespace of the test's own, never
    /// the machine's firewall. Needs root, `ip` and `nft`.
    #[test]
    fn nft_blocks_with_a_timeout_and_lifts_in_a_namespace_of_its_own() {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let have = |p: &str| std::path::Path::new(p).exists();
        if !root || !have("/usr/sbin/nft") || !(have("/usr/sbin/ip") || have("/usr/bin/ip")) {
            eprintln!("firewall: SKIPPED: needs root, ip and nft (.ci/run installs nftables)");
            return;
        }
        let ns = Namespace::new();
        let fw = Firewall::Nft(ns.exec("nft"));
        fw.prepare().unwrap();
        fw.prepare().unwrap();
        fw.block(&job("192.0.2.7", Some(600))).unwrap();
        fw.block(&job("2001:db8::7", None)).unwrap();
        let listed = ns.run(&["nft", "list", "table", "inet", TABLE]);
        assert!(listed.contains("192.0.2.7 timeout 10m"), "{listed}");
        assert!(listed.contains("2001:db8::7"), "{listed}");
        assert_eq!(
            listed.matches("drop").count(),
            2,
            "prepare twice, rules once: {listed}"
        );
        fw.unblock(&job("192.0.2.7", None)).unwrap();
        fw.unblock(&job("192.0.2.7", None)).unwrap();
        let listed = ns.run(&["nft", "list", "table", "inet", TABLE]);
        assert!(!listed.contains("192.0.2.7"), "{listed}");
        // The machine's own firewall never saw the table.
        let host = Command::new("nft")
            .args(["list", "tables"])
            .output()
            .unwrap();
        assert!(!String::from_utf8_lossy(&host.stdout).contains(&format!("inet {TABLE}")));
    }

    /// A named network namespace, deleted when dropped.
    struct Namespace(String);

    impl Namespace {
        fn new() -> Namespace {
            let name = format!("spamward-test-{}", std::process::id());
            let ok = Command::new("ip")
                .args(["netns", "add", &name])
                .status()
                .unwrap();
            assert!(ok.success(), "ip netns add {name}");
            Namespace(name)
        }

        fn exec(&self, program: &str) -> Vec<String> {
            ["ip", "netns", "exec", &self.0, program]
                .map(str::to_owned)
                .to_vec()
        }

        fn run(&self, args: &[&str]) -> String {
            let out = Command::new("ip")
                .args(["netns", "exec", &self.0])
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    }

    impl Drop for Namespace {
        fn drop(&mut self) {
            let _ = Command::new("ip")
                .args(["netns", "delete", &self.0])
                .status();
        }
    }
}
