//! A numeric host name in the form OpenSSH connects to and looks host keys up under: it
//! resolves the name with `AI_NUMERICHOST` and prints the address back, so `127.1` becomes
//! `127.0.0.1`, `10.0.0.010` (octal) `10.0.0.8` and `0:0::1` `::1`. Which known_hosts line
//! applies depends on it. It asks only for the AddressFamily configured: under `inet` an IPv6
//! address stays as written, under `inet6` an IPv4 one.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The canonical text of `name` if it is a numeric address of the AddressFamily `family`
/// (`any`, `inet`, `inet6`, any case; `None` is `any`), else `name` unchanged.
pub(super) fn canonical_host(name: &str, family: Option<&str>) -> String {
    let family = family.map(str::to_ascii_lowercase);
    let (v4, v6) = match family.as_deref() {
        Some("inet") => (true, false),
        Some("inet6") => (false, true),
        _ => (true, true),
    };
    if v4 && let Some(address) = inet_aton(name) {
        return address.to_string();
    }
    // A scoped address (`fe80::1%eth0`) depends on the interface existing; leave it as written.
    if v6 && let Ok(address) = name.parse::<Ipv6Addr>() {
        return v6_text(address);
    }
    name.to_string()
}

/// IPv4 in the forms `inet_aton` accepts: one to four parts, each decimal, octal (`0…`) or
/// hex (`0x…`); the last part fills the remaining bytes.
fn inet_aton(text: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = text.split('.').collect();
    if parts.len() > 4 {
        return None;
    }
    let mut values = Vec::with_capacity(4);
    for part in &parts {
        values.push(number(part)?);
    }
    let (last, leading) = values.split_last()?;
    if leading.iter().any(|v| *v > 0xff) {
        return None;
    }
    let last_bits = 8 * (4 - leading.len() as u32);
    if last_bits < 32 && *last >= 1u64 << last_bits {
        return None;
    }
    if *last > u64::from(u32::MAX) {
        return None;
    }
    let mut address: u32 = 0;
    for (i, v) in leading.iter().enumerate() {
        address |= (*v as u32) << (24 - 8 * i as u32);
    }
    Some(Ipv4Addr::from(address | *last as u32))
}

fn number(part: &str) -> Option<u64> {
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    if digits.is_empty() || digits.len() > 12 || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// IPv6 as `inet_ntop` writes it: RFC 5952, and an IPv4-compatible address (`::1.2.3.4`) in
/// dotted form, which Rust's `Display` does not do.
fn v6_text(v6: Ipv6Addr) -> String {
    let s = v6.segments();
    if s[..6].iter().all(|w| *w == 0) && s[6] != 0 {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        return format!("::{a}.{b}.{c}.{d}");
    }
    v6.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 16 item 4: the forms `ssh -G` prints for numeric host names.
    #[test]
    fn numeric_names_take_the_form_openssh_prints() {
        for (name, expected) in [
            ("127.1", "127.0.0.1"),
            ("10.0.0.010", "10.0.0.8"),
            ("0x7f.1", "127.0.0.1"),
            ("1234", "0.0.4.210"),
            ("0:0::1", "::1"),
            ("::ffff:1.2.3.4", "::ffff:1.2.3.4"),
            ("::1.2.3.4", "::1.2.3.4"),
            ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
            ("1.2.3.4.5", "1.2.3.4.5"),
            ("256.1.1.1", "256.1.1.1"),
            ("09.1.1.1", "09.1.1.1"),
            ("1..2", "1..2"),
            ("web", "web"),
            ("0x", "0x"),
            ("00", "0.0.0.0"),
            ("4294967295", "255.255.255.255"),
            ("4294967296", "4294967296"),
            ("1.2.65535", "1.2.255.255"),
            ("::0.0.0.1", "::1"),
            ("fe80::1%eth0", "fe80::1%eth0"),
        ] {
            assert_eq!(canonical_host(name, None), expected, "{name}");
        }
        assert_eq!(canonical_host("0:0::1", Some("INET")), "0:0::1");
        assert_eq!(canonical_host("127.1", Some("inet6")), "127.1");
        assert_eq!(canonical_host("127.1", Some("inet")), "127.0.0.1");
    }
}
