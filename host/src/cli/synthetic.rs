//! A synthetic Exim mainlog with a realistic mix, for the benchmark and the
//! bundled sample: inbound mail, authenticated submissions with cPanel
//! sender identification, web scripts (`cwd=` + `U=`), deferrals and
//! bounces, rejections, authentication failures and daemon noise — plus
//! three abuse patterns: a stolen login blasting mail, a script sending as
//! `nobody`, and a domain whose deliveries mostly fail.
//!
//! Deterministic for a given seed (a small xorshift generator), so a
//! benchmark run is repeatable.

use std::io::{self, Write};

/// Lines per simulated second: the log spans `lines / RATE` seconds.
pub const RATE: u64 = 40;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn b62(mut n: u64, width: usize, out: &mut String) {
    let start = out.len();
    for _ in 0..width {
        out.push(B62[(n % 62) as usize] as char);
        n /= 62;
    }
    // Most significant first, as Exim writes it.
    let tail: String = out[start..].chars().rev().collect();
    out.truncate(start);
    out.push_str(&tail);
}

struct Clock {
    base: i64,
}

impl Clock {
    fn stamp(&self, offset: u64) -> String {
        let t = spamward_model::Timestamp::naive(self.base + offset as i64);
        let (y, mo, d, h, mi, s) = t.to_civil();
        format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
    }
}

/// An Exim message id for the `counter`th message: the 4.97+ shape (6-11-4)
/// when `new_format`, else the old one (6-6-2).
pub(super) fn message_id(counter: u64, new_format: bool) -> String {
    let mut id = String::with_capacity(23);
    b62(counter * 7 + 1_600_000_000, 6, &mut id);
    id.push('-');
    if new_format {
        b62(counter.wrapping_mul(2_654_435_761), 11, &mut id);
        id.push('-');
        b62(counter, 4, &mut id);
    } else {
        b62(counter.wrapping_mul(2_654_435_761), 6, &mut id);
        id.push('-');
        b62(counter, 2, &mut id);
    }
    id
}

const DOMAINS: &[(&str, &str)] = &[
    ("shop.example", "shopuser"),
    ("blog.example", "blogger"),
    ("bakery.example", "bakery"),
    ("lawfirm.example", "lawfirm"),
    ("club.example", "clubadm"),
];
const REMOTE: &[&str] = &[
    "gmail.example",
    "outlook.example",
    "yahoo.example",
    "corp.example",
    "isp.example",
    "web.example",
];

/// The server the generated log comes from: its domains and their owners.
pub fn lookups() -> spamward_model::HostLookups {
    let mut lookups = spamward_model::HostLookups::default();
    for (domain, owner) in DOMAINS {
        lookups.add_owner(domain, owner);
    }
    lookups
}

/// Writes about `lines` lines of log to `out`; returns the number written.
pub fn generate(lines: u64, seed: u64, out: &mut dyn Write) -> io::Result<u64> {
    let mut rng = Rng(seed | 1);
    let clock = Clock {
        base: 1_714_557_600,
    }; // 2024-05-01 10:00:00
    let mut written = 0u64;
    let mut counter = 0u64;
    let mut buf = String::with_capacity(4096);
    while written < lines {
        buf.clear();
        counter += 1;
        let t = clock.stamp(written / RATE);
        let id = message_id(counter, counter.is_multiple_of(3));
        let roll = rng.below(1000);
        match roll {
            // Inbound mail for a local mailbox.
            0..=349 => {
                let (dom, _) = DOMAINS[rng.below(DOMAINS.len() as u64) as usize];
                let rem = REMOTE[rng.below(REMOTE.len() as u64) as usize];
                let ip = format!("198.51.100.{}", rng.below(250) + 1);
                buf.push_str(&format!(
                    "{t} {id} <= news{}@{rem} H=mail.{rem} [{ip}]:{} P=esmtps X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=no S={} id={counter}@{rem} T=\"Weekly \\\"digest\\\" {counter}\" for info@{dom}\n\
                     {t} {id} => info <info@{dom}> R=virtual_user T=dovecot_virtual_delivery C=\"250 2.0.0 <info@{dom}> saved\"\n\
                     {t} {id} Completed\n",
                    rng.below(50), 40000 + rng.below(20000), 2000 + rng.below(50000)
                ));
            }
            // Authenticated submission, usually delivered.
            350..=649 => {
                let d = rng.below(DOMAINS.len() as u64);
                let (dom, user) = DOMAINS[d as usize];
                let rem = REMOTE[rng.below(REMOTE.len() as u64) as usize];
                let staff = rng.below(4);
                let login = format!("staff{staff}@{dom}");
                // A person sends from their own office or laptop: one IP.
                let office_ip = d * 4 + staff + 1;
                let outcome = match rng.below(20) {
                    0 => format!(
                        "{t} {id} == friend@{rem} R=dkim_lookuphost T=dkim_remote_smtp defer (-44) H=mx.{rem} [203.0.113.9]: SMTP error from remote mail server after RCPT TO:<friend@{rem}>: 451 4.7.1 Greylisted\n"
                    ),
                    _ => format!(
                        "{t} {id} => friend@{rem} R=dkim_lookuphost T=dkim_remote_smtp H=mx.{rem} [203.0.113.{}] X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=yes C=\"250 2.0.0 OK\"\n{t} {id} Completed\n",
                        rng.below(200)
                    ),
                };
                buf.push_str(&format!(
                    "{t} {id} <= {login} H=(laptop) [192.0.2.{}]:{} P=esmtpsa X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=no A=dovecot_login:{login} S={} id={counter}@{dom} T=\"Re: order {counter}\" for friend@{rem}\n\
                     {t} {id} Sender identification U={user} D={dom} S={login}\n{outcome}",
                    office_ip, 50000 + rng.below(10000), 3000 + rng.below(9000)
                ));
            }
            // A contact form run by the account's PHP.
            650..=749 => {
                let (dom, user) = DOMAINS[rng.below(DOMAINS.len() as u64) as usize];
                let rem = REMOTE[rng.below(REMOTE.len() as u64) as usize];
                buf.push_str(&format!(
                    "{t} cwd=/home/{user}/public_html/contact 3 args: /usr/sbin/sendmail -t -i\n\
                     {t} {id} <= {user}@{dom} U={user} P=local S={} T=\"Contact form\" for visitor@{rem}\n\
                     {t} {id} => visitor@{rem} R=dkim_lookuphost T=dkim_remote_smtp H=mx.{rem} [203.0.113.{}] C=\"250 OK\"\n\
                     {t} {id} Completed\n",
                    800 + rng.below(800), rng.below(200)
                ));
            }
            // Stolen login blasting from many IPs.
            750..=809 => {
                let rem = REMOTE[rng.below(REMOTE.len() as u64) as usize];
                let fail = rng.below(3) == 0;
                let delivery = if fail {
                    format!(
                        "{t} {id} ** target{}@{rem} R=dkim_lookuphost T=dkim_remote_smtp H=mx.{rem} [203.0.113.7]: SMTP error from remote mail server after RCPT TO:<target@{rem}>: 550 5.1.1 User unknown\n",
                        rng.below(99999)
                    )
                } else {
                    format!(
                        "{t} {id} => target{}@{rem} R=dkim_lookuphost T=dkim_remote_smtp H=mx.{rem} [203.0.113.7] C=\"250 OK\"\n",
                        rng.below(99999)
                    )
                };
                // Spam runs address many recipients per message.
                let mut recipients = String::new();
                for _ in 0..5 + rng.below(11) {
                    recipients.push_str(&format!(
                        " target{}@{}",
                        rng.below(99999),
                        REMOTE[rng.below(REMOTE.len() as u64) as usize]
                    ));
                }
                buf.push_str(&format!(
                    "{t} {id} <= sales@bakery.example H=(User) [45.{}.{}.{}]:{} P=esmtpa A=dovecot_login:sales@bakery.example S=1800 T=\"Invoice overdue\" for{recipients}\n\
                     {t} {id} Sender identification U=bakery D=bakery.example S=sales@bakery.example\n{delivery}{t} {id} Completed\n",
                    rng.below(250), rng.below(250), rng.below(250), 1024 + rng.below(60000)
                ));
            }
            // A script sending as nobody.
            810..=829 => {
                let rem = REMOTE[rng.below(REMOTE.len() as u64) as usize];
                buf.push_str(&format!(
                    "{t} cwd=/var/www/html/wp-content/uploads 3 args: /usr/sbin/sendmail -t -i\n\
                     {t} {id} <= nobody@server.example U=nobody P=local S=1200 T=\"You won\" for lucky{}@{rem}\n\
                     {t} {id} => lucky@{rem} R=dkim_lookuphost T=dkim_remote_smtp H=mx.{rem} [203.0.113.8] C=\"250 OK\"\n\
                     {t} {id} Completed\n",
                    rng.below(9999)
                ));
            }
            // A newsletter domain whose deliveries mostly fail.
            830..=879 => {
                let rem = REMOTE[rng.below(REMOTE.len() as u64) as usize];
                let bad = rng.below(10) < 7;
                let delivery = if bad {
                    format!(
                        "{t} {id} ** old{}@{rem} R=dkim_lookuphost T=dkim_remote_smtp H=mx.{rem} [203.0.113.5]: SMTP error from remote mail server after RCPT TO:<old@{rem}>: 550 5.1.1 No such user\n",
                        rng.below(9999)
                    )
                } else {
                    format!(
                        "{t} {id} => old{}@{rem} R=dkim_lookuphost T=dkim_remote_smtp H=mx.{rem} [203.0.113.5] C=\"250 OK\"\n",
                        rng.below(9999)
                    )
                };
                buf.push_str(&format!(
                    "{t} {id} <= list@club.example U=clubadm P=local S=5000 T=\"Club news\" for old{}@{rem}\n{delivery}{t} {id} Completed\n",
                    rng.below(9999)
                ));
            }
            // Rejections and authentication failures.
            880..=939 => {
                let ip = format!("203.0.113.{}", rng.below(250) + 1);
                if rng.below(2) == 0 {
                    buf.push_str(&format!(
                        "{t} H=(spammer.example) [{ip}]:{} I=[192.0.2.1]:25 F=<x@spammer.example> rejected RCPT <someone@{}>: relay not permitted\n",
                        1024 + rng.below(60000), REMOTE[0]
                    ));
                } else {
                    buf.push_str(&format!(
                        "{t} dovecot_login authenticator failed for (User) [{ip}]:{} I=[192.0.2.1]:587: 535 Incorrect authentication data (set_id=admin@shop.example)\n",
                        1024 + rng.below(60000)
                    ));
                }
            }
            // Daemon noise.
            _ => {
                let ip = format!("198.51.100.{}", rng.below(250) + 1);
                match rng.below(3) {
                    0 => buf.push_str(&format!("{t} SMTP connection from [{ip}]:{} I=[192.0.2.1]:25 (TCP/IP connection count = 3)\n", 1024 + rng.below(60000))),
                    1 => buf.push_str(&format!("{t} SMTP connection from (client) [{ip}]:{} I=[192.0.2.1]:25 closed by QUIT\n", 1024 + rng.below(60000))),
                    _ => buf.push_str(&format!("{t} Start queue run: pid={}\n", 1000 + rng.below(30000))),
                }
            }
        };
        out.write_all(buf.as_bytes())?;
        written += buf.bytes().filter(|&b| b == b'\n').count() as u64;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_about_the_requested_size() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let n = generate(1000, 7, &mut a).unwrap();
        generate(1000, 7, &mut b).unwrap();
        assert_eq!(a, b);
        assert!((1000..1010).contains(&n));
        assert_eq!(a.iter().filter(|&&c| c == b'\n').count() as u64, n);
    }

    #[test]
    fn message_ids_have_both_exim_shapes() {
        assert_eq!(message_id(1, false).len(), 16);
        assert_eq!(message_id(3, true).len(), 23);
    }
}
