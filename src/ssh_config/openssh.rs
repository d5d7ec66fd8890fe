//! OpenSSH's rules that ssh2-config leaves to us: raw options it does not type, options we must
//! refuse rather than ignore, `%h` tokens, default key files, the local user name.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ssh2_config::HostParams;

use super::SshConfigError;

/// Raw option values that ssh2-config does not type (keys arrive lowercased).
pub(super) struct RawOptions<'a>(pub(super) &'a HashMap<String, Vec<String>>);

impl RawOptions<'_> {
    pub(super) fn all(&self, key: &str) -> Option<&[String]> {
        self.0.get(key).map(Vec::as_slice).filter(|v| !v.is_empty())
    }

    pub(super) fn first(&self, key: &str) -> Option<&str> {
        self.all(key).and_then(|v| v.first()).map(String::as_str)
    }

    pub(super) fn bool(
        &self,
        host: &str,
        key: &str,
        option: &'static str,
    ) -> Result<Option<bool>, SshConfigError> {
        match self.first(key) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("yes") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("no") => Ok(Some(false)),
            Some(v) => Err(SshConfigError::Value {
                host: host.to_string(),
                option,
                value: v.to_string(),
                message: "expected yes or no".into(),
            }),
        }
    }
}

/// Options that change where or how OpenSSH would connect, which lazytunnel cannot honour yet:
/// connecting directly instead would silently bypass the user's intent.
pub(super) fn reject_unsupported(
    host: &str,
    params: &HostParams,
    raw: &RawOptions,
) -> Result<(), SshConfigError> {
    if let Some(jumps) = &params.proxy_jump
        && !jumps.iter().all(|j| j.eq_ignore_ascii_case("none"))
    {
        return Err(SshConfigError::Unsupported {
            host: host.to_string(),
            option: "ProxyJump",
            message: "does not support jump hosts yet; reach the host directly or remove ProxyJump for it",
        });
    }
    if raw
        .first("proxycommand")
        .is_some_and(|v| !v.eq_ignore_ascii_case("none"))
    {
        return Err(SshConfigError::Unsupported {
            host: host.to_string(),
            option: "ProxyCommand",
            message: "is an embedded SSH client and cannot run a proxy command; use ProxyJump or a direct address",
        });
    }
    Ok(())
}

/// `%h` (the host name given) and `%%` in HostName, as OpenSSH expands them.
pub(super) fn expand_host_tokens(value: &str, host: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('h') => out.push_str(host),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// OpenSSH's default identity files, in its order.
pub(super) fn default_identity_files(home: &Path) -> Vec<PathBuf> {
    [
        "id_rsa",
        "id_ecdsa",
        "id_ecdsa_sk",
        "id_ed25519",
        "id_ed25519_sk",
        "id_xmss",
        "id_dsa",
    ]
    .iter()
    .map(|name| home.join(".ssh").join(name))
    .collect()
}

/// The login name of the user running us, as OpenSSH takes it: from the password database.
pub(super) fn local_user_name() -> Option<String> {
    let mut record = std::mem::MaybeUninit::<libc::passwd>::uninit();
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer refers to live, correctly sized storage owned by this frame;
    // getpwuid_r writes the record and its strings into `record` and `buf` only.
    let rc = unsafe {
        libc::getpwuid_r(
            libc::getuid(),
            record.as_mut_ptr(),
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if rc == 0 && !found.is_null() {
        // SAFETY: on success `found` points at `record`, whose pw_name is a NUL-terminated
        // string inside `buf`, both still alive here.
        let name = unsafe { std::ffi::CStr::from_ptr((*found).pw_name) };
        if let Ok(name) = name.to_str() {
            return Some(name.to_owned());
        }
    }
    std::env::var("USER").ok().filter(|u| !u.is_empty())
}

pub(super) fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}
