//! Waiting for the kernel, or another thread, to say something happened:
//! an eventfd (a counter the kernel or a thread bumps, readable while it is
//! not zero) and `poll(2)` over a few descriptors with a timeout.
//!
//! The memory sampler waits on these: the kernel's cgroup v1 threshold
//! notification is an eventfd, cgroup v2's `memory.events` wakes `poll` with
//! `POLLPRI`, and the sampler's own stop request is an eventfd too, so that
//! one `poll` waits for all of them and for the next periodic sample.
#![allow(unsafe_code)] // eventfd and poll: see the module doc.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// An eventfd, close-on-exec and non-blocking.
#[derive(Debug)]
pub struct EventFd(OwnedFd);

impl EventFd {
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd takes two integers and returns a new descriptor
        // or -1; no memory is passed.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd and nothing else owns it.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Adds 1 to the counter: a `poll` for [`READABLE`] wakes.
    pub fn notify(&self) -> io::Result<()> {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live local buffer to a descriptor
        // this value owns.
        let n = unsafe { libc::write(self.0.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        if n == 8 { Ok(()) } else { Err(io::Error::last_os_error()) }
    }

    /// Reads and clears the counter: how many notifications came since the
    /// last call (0 when none).
    pub fn take(&self) -> io::Result<u64> {
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live local buffer of 8 bytes
        // from a descriptor this value owns.
        let n = unsafe { libc::read(self.0.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
        match n {
            8 => Ok(u64::from_ne_bytes(count)),
            _ => {
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::WouldBlock { Ok(0) } else { Err(error) }
            }
        }
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Data to read (an eventfd's counter is not zero).
pub const READABLE: i16 = libc::POLLIN;
/// A kernfs file (a cgroup's `memory.events`) changed since it was last
/// read; the kernel also sets `POLLERR` with it, which `poll` always reports.
pub const CHANGED: i16 = libc::POLLPRI;

/// Waits until one of `fds` has one of its events, or `timeout` passes.
/// Returns what each had (`revents`, 0 for none), in order; all 0 after the
/// timeout or when a signal interrupted the wait.
pub fn poll(fds: &[(BorrowedFd<'_>, i16)], timeout: Duration) -> io::Result<Vec<i16>> {
    let mut polled: Vec<libc::pollfd> =
        fds.iter().map(|(fd, events)| libc::pollfd { fd: fd.as_raw_fd(), events: *events, revents: 0 }).collect();
    // Rounded up: a timeout of 0.4 ms must not become a busy loop of zeros.
    let millis = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    // SAFETY: `polled` is a live, initialised array of `polled.len()`
    // pollfd entries that poll may write the `revents` of; the descriptors
    // are borrowed for the duration of the call.
    let n = unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, millis) };
    if n < 0 {
        let error = io::Error::last_os_error();
        if error.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![0; fds.len()]);
        }
        return Err(error);
    }
    Ok(polled.iter().map(|p| p.revents).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_eventfd_wakes_poll_and_counts() {
        let event = EventFd::new().unwrap();
        assert_eq!(poll(&[(event.as_fd(), READABLE)], Duration::ZERO).unwrap(), [0]);
        assert_eq!(event.take().unwrap(), 0);
        event.notify().unwrap();
        event.notify().unwrap();
        let revents = poll(&[(event.as_fd(), READABLE)], Duration::from_secs(60)).unwrap();
        assert_eq!(revents[0] & READABLE, READABLE);
        assert_eq!(event.take().unwrap(), 2);
        assert_eq!(poll(&[(event.as_fd(), READABLE)], Duration::ZERO).unwrap(), [0]);
    }

    #[test]
    fn poll_says_which_one_woke() {
        let (quiet, loud) = (EventFd::new().unwrap(), EventFd::new().unwrap());
        loud.notify().unwrap();
        let revents = poll(&[(quiet.as_fd(), READABLE), (loud.as_fd(), READABLE)], Duration::from_secs(60)).unwrap();
        assert_eq!(revents, [0, READABLE]);
    }
}
