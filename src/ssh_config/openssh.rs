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
