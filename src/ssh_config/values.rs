//! OpenSSH's value syntaxes, with its ranges and its error wording: flags (`yes`/`true`,
//! `no`/`false`, any case, plus the extra words some options take), integers (0 to INT_MAX),
//! times (`convtime`: at most INT_MAX seconds; `none` where an option allows it) and ports
//! (1-65535 or a service name from the services database).

use std::time::Duration;

/// OpenSSH's INT_MAX bound on integers and times.
const INT_MAX: u64 = i32::MAX as u64;

/// A yes/no flag, optionally with more words (`ask`, `accept-new`, …), case-insensitive.
/// Returns the word in lowercase, with `true`/`false` read as `yes`/`no`.
pub(super) fn multistate(value: &str, extra: &[&str]) -> Result<String, String> {
    let lower = value.to_ascii_lowercase();
    match lower.as_str() {
        "yes" | "true" => Ok("yes".into()),
        "no" | "false" => Ok("no".into()),
        word if extra.contains(&word) => Ok(lower),
        _ => Err(format!("unsupported option {value:?}")),
    }
}

pub(super) fn flag(value: &str) -> Result<bool, String> {
    multistate(value, &[]).map(|v| v == "yes")
}

/// A decimal integer in 0..=INT_MAX, read as `strtonum` reads it (leading zeros and a `+`
/// sign allowed).
pub(super) fn integer(value: &str) -> Result<u32, String> {
    let (negative, digits) = match value.trim_start_matches([' ', '\t']) {
        s if s.starts_with('-') => (true, &s[1..]),
        s => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("integer value invalid".into());
    }
    let zero = digits.bytes().all(|b| b == b'0');
    if negative && !zero {
        return Err("integer value too small".into());
    }
    match digits.trim_start_matches('0').len() > 10 {
        true => Err("integer value too large".into()),
        false => match digits.parse::<u64>().unwrap_or(u64::MAX) {
            n if n > INT_MAX => Err("integer value too large".into()),
            n => Ok(n as u32),
        },
    }
}

/// OpenSSH's `convtime`: seconds, or numbers with s/m/h/d/w units run together (`1h30m`),
/// at most INT_MAX seconds in total (about 68 years).
pub(super) fn time(value: &str) -> Result<Duration, String> {
    convtime(value)
        .map(Duration::from_secs)
        .ok_or_else(|| "invalid time value".to_string())
}

fn convtime(text: &str) -> Option<u64> {
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        // strtol: optional blanks and sign, then digits (at least one).
        let trimmed = rest.trim_start_matches([' ', '\t']);
        let (negative, unsigned) = match trimmed.as_bytes().first() {
            Some(b'-') => (true, &trimmed[1..]),
            Some(b'+') => (false, &trimmed[1..]),
            _ => (false, trimmed),
        };
        let digits = unsigned.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let number = &unsigned[..digits];
        let secs: u64 = if number.trim_start_matches('0').len() > 10 {
            u64::MAX
        } else {
            number.parse().ok()?
        };
        if negative && secs != 0 {
            return None;
        }
        let mut after = unsigned[digits..].chars();
        let multiplier = match after.next() {
            None => 1,
            Some('s' | 'S') => 1,
            Some('m' | 'M') => 60,
            Some('h' | 'H') => 3600,
            Some('d' | 'D') => 86400,
            Some('w' | 'W') => 604800,
            Some(_) => return None,
        };
        if secs > INT_MAX / multiplier {
            return None;
        }
        total = total.checked_add(secs * multiplier)?;
        if total > INT_MAX {
            return None;
        }
        rest = after.as_str();
    }
    Some(total)
}

/// A port as OpenSSH's `a2port` reads it: a number in 1..=65535 (leading zeros and `+`
/// allowed) or a TCP service name (`http`).
pub(super) fn port(value: &str) -> Result<u16, String> {
    let bad = || format!("Bad port {value:?}");
    // strtonum first (blanks and a sign allowed), then the services database.
    let unsigned = value.trim_start_matches([' ', '\t']);
    let (negative, digits) = match unsigned.as_bytes().first() {
        Some(b'-') => (true, &unsigned[1..]),
        Some(b'+') => (false, &unsigned[1..]),
        _ => (false, unsigned),
    };
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return match digits.trim_start_matches('0').len() > 5 || negative {
            true => Err(bad()),
            false => match digits.parse::<u32>() {
                Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
                _ => Err(bad()),
            },
        };
    }
    service_port(value).ok_or_else(bad)
}

/// The services database's TCP port for `name`.
fn service_port(name: &str) -> Option<u16> {
    use std::sync::Mutex;
    // getservbyname returns static storage; the lock keeps two lookups from sharing it.
    static LOCK: Mutex<()> = Mutex::new(());
    let name = std::ffi::CString::new(name).ok()?;
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: both arguments are NUL-terminated strings alive for the call; the returned
    // record is read before the lock is released.
    unsafe {
        let entry = libc::getservbyname(name.as_ptr(), c"tcp".as_ptr());
        if entry.is_null() {
            return None;
        }
        match u16::from_be((*entry).s_port as u16) {
            0 => None,
            port => Some(port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 16 item 8: OpenSSH's flag parser takes true/false as yes/no, in any case.
    #[test]
    fn flags_take_true_and_false_in_any_case() {
        assert_eq!(flag("TRUE"), Ok(true));
        assert_eq!(flag("False"), Ok(false));
        assert_eq!(multistate("Off", &["off", "ask"]).as_deref(), Ok("off"));
        assert!(flag("1").unwrap_err().contains("\"1\""));
    }

    /// Issue 13 item 2: values beyond OpenSSH's INT_MAX are refused, never wrapped or panicking.
    #[test]
    fn integers_and_times_stop_at_int_max_as_in_openssh() {
        assert_eq!(integer("0"), Ok(0));
        assert_eq!(integer("010"), Ok(10));
        assert_eq!(integer("2147483647"), Ok(2147483647));
        assert_eq!(
            integer("2147483648").unwrap_err(),
            "integer value too large"
        );
        assert_eq!(
            integer("99999999999999999999999").unwrap_err(),
            "integer value too large"
        );
        assert_eq!(integer("-1").unwrap_err(), "integer value too small");
        assert_eq!(integer("abc").unwrap_err(), "integer value invalid");
        assert_eq!(time("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(time("5S"), Ok(Duration::from_secs(5)));
        assert_eq!(time("2147483647"), Ok(Duration::from_secs(2147483647)));
        for bad in [
            "2147483648",
            "10000000000000000000",
            "99999999w",
            "-1",
            "0x10",
            "",
            "5x",
        ] {
            assert!(time(bad).is_err(), "{bad}");
        }
    }

    /// Issue 16 item 8: service names are ports, as `a2port` reads them.
    #[test]
    fn ports_are_numbers_or_service_names() {
        assert_eq!(port("022"), Ok(22));
        assert_eq!(port("+22"), Ok(22));
        assert_eq!(port("65535"), Ok(65535));
        for bad in ["0", "65536", "0x16", "-1", "-0", "HTTP", "99999999999", "+"] {
            assert!(port(bad).is_err(), "{bad}");
        }
        // Without a services database (a minimal container) a name is refused, as by OpenSSH.
        match std::path::Path::new("/etc/services").exists() {
            true => assert_eq!(port("ssh"), Ok(22)),
            false => assert!(port("ssh").is_err()),
        }
    }
}
