//! OpenSSH's defaults that depend on the local account: default key files, the local user
//! name, the home directory.

use std::path::{Path, PathBuf};

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

/// A password database record: login name and home directory.
struct Account {
    name: String,
    home: PathBuf,
}

/// The record of the user running us (`None`) or of the named user.
fn account(name: Option<&str>) -> Option<Account> {
    let name = match name {
        Some(name) => Some(std::ffi::CString::new(name).ok()?),
        None => None,
    };
    let mut record = std::mem::MaybeUninit::<libc::passwd>::uninit();
    let mut buf = vec![0 as libc::c_char; 16384];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer refers to live, correctly sized storage owned by this frame (the
    // name is NUL-terminated); getpw*_r write the record and its strings into `record` and
    // `buf` only.
    let rc = unsafe {
        match &name {
            Some(name) => libc::getpwnam_r(
                name.as_ptr(),
                record.as_mut_ptr(),
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            ),
            None => libc::getpwuid_r(
                libc::getuid(),
                record.as_mut_ptr(),
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            ),
        }
    };
    if rc != 0 || found.is_null() {
        return None;
    }
    // SAFETY: on success `found` points at `record`, whose pw_name and pw_dir are
    // NUL-terminated strings inside `buf`, both still alive here.
    let (name, dir) = unsafe {
        (
            std::ffi::CStr::from_ptr((*found).pw_name),
            std::ffi::CStr::from_ptr((*found).pw_dir),
        )
    };
    Some(Account {
        name: name.to_str().ok()?.to_owned(),
        home: PathBuf::from(dir.to_str().ok()?),
    })
}

/// The login name of the user running us, as OpenSSH takes it: from the password database.
pub(super) fn local_user_name() -> Option<String> {
    account(None)
        .map(|a| a.name)
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
}

/// Our home directory: `$HOME`, where OpenSSH reads the password database. Sandboxes, service
/// managers and tests point `HOME` elsewhere on purpose; when it is unset or empty (launchd
/// and cron may start a job without it) the password database decides, as for OpenSSH.
pub(super) fn home_dir() -> PathBuf {
    home_from(std::env::var_os("HOME"))
}

fn home_from(home: Option<std::ffi::OsString>) -> PathBuf {
    match home {
        Some(home) if !home.is_empty() => PathBuf::from(home),
        _ => account(None)
            .map(|a| a.home)
            .unwrap_or_else(|| PathBuf::from("/")),
    }
}

/// The home directory of the named user (`~user`), from the password database.
pub(super) fn user_home(name: &str) -> Option<PathBuf> {
    account(Some(name)).map(|a| a.home)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 16 item 12: `$HOME` wins; without it, the password database's home applies.
    #[test]
    fn home_is_home_else_the_password_database() {
        assert_eq!(home_from(Some("/h".into())), PathBuf::from("/h"));
        let database = account(None)
            .expect("the test user has a password entry")
            .home;
        assert_eq!(home_from(Some("".into())), database);
        assert_eq!(home_from(None), database);
    }

    #[test]
    fn named_users_home_comes_from_the_password_database() {
        assert_eq!(user_home("root"), Some(PathBuf::from(getent_root_home())));
        assert_eq!(user_home("no-such-user-lazytunnel"), None);
    }

    fn getent_root_home() -> String {
        let text = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
        let line = text
            .lines()
            .find(|l| l.starts_with("root:"))
            .expect("root in /etc/passwd");
        line.split(':').nth(5).expect("home field").to_string()
    }
}
