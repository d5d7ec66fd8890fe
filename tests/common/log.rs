//! A child process's captured output: the file it is written to, and ways to await a line in it.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::POLL_INTERVAL;

/// A log file that a child process appends to.
#[derive(Debug, Clone)]
pub struct LogFile {
    path: PathBuf,
}

impl LogFile {
    /// A log at `path`; the file is created empty if it does not exist.
    pub fn new(path: PathBuf) -> Self {
        let log = LogFile { path };
        log.open_append();
        log
    }

    /// A handle to give a child as stdout or stderr. Opened in append mode, so several handles
    /// (stdout and stderr, or one per restart) never overwrite each other.
    pub fn stdio(&self) -> Stdio {
        Stdio::from(self.open_append())
    }

    fn open_append(&self) -> File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .unwrap_or_else(|err| panic!("could not open log {}: {err}", self.path.display()))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Everything written so far (lossy UTF-8; empty if the file is gone).
    pub fn contents(&self) -> String {
        std::fs::read(&self.path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// The current end of the log in bytes: pass it to [`LogFile::contents_since`] to read only
    /// what was written after this point.
    pub fn end_offset(&self) -> usize {
        std::fs::metadata(&self.path).map_or(0, |meta| meta.len() as usize)
    }

    /// What was written after byte `offset`.
    pub fn contents_since(&self, offset: usize) -> String {
        let contents = self.contents();
        contents.get(offset..).unwrap_or_default().to_string()
    }

    /// How many times `needle` occurs in the log so far.
    pub fn count(&self, needle: &str) -> usize {
        self.contents().matches(needle).count()
    }

    /// Waits until `needle` occurs at least `count` times, re-reading the file every
    /// [`POLL_INTERVAL`]. Panics with the whole log after `timeout`. Returns the log.
    pub async fn wait_for_count(
        &self,
        what: &str,
        needle: &str,
        count: usize,
        timeout: Duration,
    ) -> String {
        let awaited = format!("{count}x {needle:?}");
        self.wait_until(what, &awaited, timeout, |contents| {
            contents.matches(needle).count() >= count
        })
        .await
    }

    /// Waits until one of `needles` occurs after byte `offset` (see [`LogFile::end_offset`]),
    /// as [`LogFile::wait_for_count`] waits. Returns what was written after `offset`.
    pub async fn wait_for_any_since(
        &self,
        what: &str,
        offset: usize,
        needles: &[&str],
        timeout: Duration,
    ) -> String {
        let since = |contents: &str| contents.get(offset..).unwrap_or_default().to_string();
        let awaited = format!("one of {needles:?}");
        let contents = self
            .wait_until(what, &awaited, timeout, |contents| {
                let since = since(contents);
                needles.iter().any(|needle| since.contains(needle))
            })
            .await;
        since(&contents)
    }

    async fn wait_until(
        &self,
        what: &str,
        awaited: &str,
        timeout: Duration,
        done: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let contents = self.contents();
            if done(&contents) {
                return contents;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {awaited} in the {what} log ({}):\n\
                     {contents}",
                    self.path.display()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Prints the end of the log to stderr, labelled; used by `Drop` impls during a panic so a
    /// failing test shows what the process said.
    pub fn dump_tail(&self, what: &str) {
        const TAIL: usize = 16 * 1024;
        let contents = self.contents();
        let mut start = contents.len().saturating_sub(TAIL);
        while !contents.is_char_boundary(start) {
            start += 1;
        }
        eprintln!(
            "----- {what} log ({}), last {} bytes -----\n{}\n----- end of {what} log -----",
            self.path.display(),
            contents.len() - start,
            &contents[start..]
        );
    }
}
