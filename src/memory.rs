//! How the allocator trades speed for footprint.
//!
//! Data moves through the daemon as one heap buffer per SSH packet or socket read, freed a
//! moment later, often by another task. glibc's malloc hands the free top of a heap back to
//! the kernel as soon as more than 128 KiB of it is free, so at 1 GB/s the next packets
//! fault fresh, zeroed pages in again: about one page fault per 16 KiB moved, measured at
//! 10-15% of the daemon's CPU per GiB. Keeping up to 32 MiB free per heap removes the churn;
//! the memory goes back when a session closes, so a daemon left running keeps no more than it
//! needs between bursts.

/// Called once at startup ([`crate::startup`]), before other threads exist.
pub(crate) fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before other threads run.
    unsafe {
        // Setting either also stops glibc from adjusting them by itself.
        libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Returns free heap memory to the kernel: after a session closes, when its buffers are gone.
pub fn release() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe and only releases memory that is free.
    unsafe {
        libc::malloc_trim(0);
    }
}
