//! Random ssh_config files from a seed: Host blocks with `*`, `?`, `!` and several patterns,
//! options before any Host, a Match block that matches no host, Include of several files by a
//! glob (inside a block or not), quoting, `=` forms, keyword case, repeated options, `%`
//! tokens, and now and then a value OpenSSH refuses, in a block that applies or not.

/// splitmix64: small, seedable, good enough to spread cases.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// One generated case: the main file, the files its Include glob finds, the host to resolve
/// (with a user and port given as `ssh -l USER -p PORT` would, sometimes).
pub struct Case {
    pub main: String,
    pub included: Vec<(String, String)>,
    pub host: String,
    pub user: Option<String>,
    pub port: Option<u16>,
}

/// Names a case resolves, and the hop names the options mention.
const HOSTS: &[&str] = &[
    "web",
    "Web",
    "db1",
    "db12",
    "bastion",
    "jump2",
    "srv.example",
    "127.1",
    "10.0.0.010",
];
const PATTERNS: &[&str] = &[
    "web",
    "Web",
    "w*",
    "*",
    "db?",
    "db*",
    "!web",
    "!db1",
    "bastion",
    "jump?",
    "*.example",
    "127.*",
    "10.0.0.010",
];

/// Each option with values OpenSSH accepts and values it refuses.
const OPTIONS: &[(&str, &[&str], &[&str])] = &[
    (
        "HostName",
        &[
            "h1.example",
            "%h.lan",
            "127.1",
            "10.0.0.010",
            "0:0::1",
            "UPPER.Example",
            "%%h",
        ],
        &["a b"],
    ),
    (
        "Port",
        &["22", "2200", "022", "ssh", "65535", "+22"],
        &["0", "70000", "http-nope", "1 2"],
    ),
    (
        "User",
        &["alice", "bob", "u%%1", "%r", "Carol"],
        &["a b", "\"\""],
    ),
    (
        "IdentityFile",
        &[
            "~/.ssh/id_a",
            "/keys/k1",
            "\"~/.ssh/q\\ key\"",
            "~/.ssh/id_a",
            "none",
        ],
        &["a b"],
    ),
    (
        "CertificateFile",
        &["~/.ssh/c1", "/certs/c2", "~/.ssh/c1"],
        &["a b"],
    ),
    (
        "IdentitiesOnly",
        &["yes", "no", "true", "FALSE", "Yes"],
        &["maybe", "1"],
    ),
    (
        "UserKnownHostsFile",
        &[
            "~/.ssh/kh_%h",
            "~/.ssh/kh_%k",
            "/tmp/kh1 /tmp/kh2",
            "none",
            "%d/kh_%r_%p_%n",
            "~/kh_%u_%%",
            "~/.ssh/kh_%C",
            "%d/kh_%i_%L_%l",
        ],
        &["none other", "~/.ssh/kh_%z"],
    ),
    (
        "GlobalKnownHostsFile",
        &["/etc/g1", "~/g2 /g3", "none"],
        &["/g none"],
    ),
    (
        "StrictHostKeyChecking",
        &["yes", "no", "ask", "accept-new", "off", "true", "False"],
        &["maybe"],
    ),
    (
        "ServerAliveInterval",
        &["0", "30", "1m", "none", "5S", "2147483647", "1h+5"],
        &["2147483648", "-1", "10000000000000000000"],
    ),
    (
        "ServerAliveCountMax",
        &["0", "5", "010", "2147483647", "+5"],
        &["-1", "abc", "2147483648"],
    ),
    (
        "ConnectTimeout",
        &["5", "none", "0", "1h", "1h30m"],
        &["99999999999", "NONE", "0x10"],
    ),
    ("HostKeyAlias", &["MyBox", "alias1"], &["a b"]),
    (
        "ProxyJump",
        &[
            "bastion",
            "%r@bastion,jump2",
            "u@[10.1.2.3]:2200",
            "none",
            "jump2:2222",
            "web",
            "bastion,bastion",
            "ssh://alice@jump2:22",
            "%h-j",
            "%r@bastion,u%%2@jump2:ssh,db12",
            "u%%%%1@bastion,jump2",
            "jump2,%n-hop",
        ],
        &["bastion:%p", "ssh://%h-jump", "a,,b", "@h"],
    ),
    ("CanonicalizeHostname", &["no", "false"], &["none"]),
    ("Compression", &["yes", "no"], &["maybe"]),
    ("LogLevel", &["ERROR", "debug3"], &["loud"]),
    ("AddressFamily", &["inet", "ANY"], &["yes"]),
    ("SendEnv", &["LANG LC_*", "-LANG"], &["A=1"]),
    ("SetEnv", &["A=1 B=2"], &["A", "=1"]),
];

pub fn case(rng: &mut Rng, dir: &str) -> Case {
    let host = rng.pick(HOSTS).to_string();
    let mut main = String::new();
    for _ in 0..rng.below(3) {
        main.push_str(&option_line(rng, ""));
    }
    let mut included = Vec::new();
    if rng.chance(40) {
        for n in 1..=1 + rng.below(3) {
            let mut text = String::new();
            if rng.chance(50) {
                for _ in 0..1 + rng.below(2) {
                    text.push_str(&option_line(rng, ""));
                }
            }
            text.push_str(&block(rng));
            included.push((format!("inc{n}.conf"), text));
        }
    }
    let include_at = rng.below(4);
    for index in 0..1 + rng.below(4) {
        if index == include_at && !included.is_empty() {
            let pattern = match rng.below(3) {
                0 => format!("{dir}/inc*.conf"),
                1 => format!("\"{dir}/inc?.conf\""),
                _ => format!("{dir}/inc[1-9].conf"),
            };
            main.push_str(&format!("Include {pattern}\n"));
        }
        main.push_str(&block(rng));
    }
    if rng.chance(15) {
        main.push_str("Match host nomatch-zzz\n  User matched\n  Port 1\n");
    }
    if !included.is_empty() && !main.contains("Include") {
        main.push_str(&format!("Include {dir}/inc*.conf\n"));
    }
    let user = rng
        .chance(15)
        .then(|| rng.pick(&["given", "u1"]).to_string());
    let port = rng.chance(15).then(|| [2222, 22][rng.below(2)]);
    Case {
        main,
        included,
        host,
        user,
        port,
    }
}

fn block(rng: &mut Rng) -> String {
    let mut patterns: Vec<&str> = (0..1 + rng.below(3)).map(|_| rng.pick(PATTERNS)).collect();
    if patterns.iter().all(|p| p.starts_with('!')) {
        patterns.push("*");
    }
    let keyword = rng.pick(&["Host", "host", "HOST"]);
    let mut text = format!("{keyword} {}\n", patterns.join(" "));
    for _ in 0..1 + rng.below(4) {
        text.push_str(&option_line(rng, "  "));
    }
    text
}

fn option_line(rng: &mut Rng, indent: &str) -> String {
    if rng.chance(2) {
        return format!("{indent}FrobnicateAll yes\n");
    }
    if rng.chance(2) {
        return format!("{indent}IgnoreUnknown Frob*\n");
    }
    if rng.below(200) == 0 {
        return format!("{indent}User\n");
    }
    // Hops are where most rules meet: give ProxyJump more lines than its share.
    let jump = OPTIONS.iter().position(|(name, _, _)| *name == "ProxyJump");
    let index = match jump {
        Some(jump) if rng.chance(8) => jump,
        _ => rng.below(OPTIONS.len()),
    };
    let (name, good, bad) = OPTIONS[index];
    let value = match bad.is_empty() || !rng.chance(2) {
        true => rng.pick(good),
        false => rng.pick(bad),
    };
    let keyword = match rng.below(5) {
        0 => name.to_ascii_lowercase(),
        1 => name.to_ascii_uppercase(),
        2 => format!("\"{name}\""),
        _ => name.to_string(),
    };
    // A quoted ProxyJump reaches a shell in OpenSSH (see `proxy_jump::hops_of`), which
    // `ssh -G` cannot show; the unit tests cover it.
    let quoted = !value.contains([' ', '"']) && name != "ProxyJump" && rng.chance(15);
    let value = match quoted {
        true => format!("\"{value}\""),
        false => value.to_string(),
    };
    // After a quoted keyword OpenSSH takes `=` as part of the value (`"Port"=22` is a bad
    // port); that is tried, but rarely, so that most lines stay good.
    let separator = match keyword.starts_with('"') && !rng.chance(5) {
        true => rng.pick(&[" ", "\t"]),
        false => rng.pick(&[" ", " ", "=", " = ", "\t"]),
    };
    let comment = if rng.chance(10) { " # note" } else { "" };
    format!("{indent}{keyword}{separator}{value}{comment}\n")
}
