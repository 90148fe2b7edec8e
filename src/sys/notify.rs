//! Datagrams that may carry file descriptors, on a unix socket: what the
//! systemd notify proxy (`crate::hang::watchdog`) receives from the child
//! and passes on (`FDSTORE=1` sends descriptors along with the message).

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags, UnixAddr};

/// The most descriptors one message can carry (the kernel's SCM_MAX_FD).
const MAX_FDS: usize = 253;

/// One datagram received.
pub struct Received {
    pub len: usize,
    /// Descriptors that came with it, now ours (close-on-exec).
    pub fds: Vec<OwnedFd>,
    /// The datagram was longer than the buffer, or had more descriptors
    /// than fit: what is here is not all of it.
    pub truncated: bool,
}

/// Receives one datagram into `buf`, with its descriptors.
pub fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Received> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS]);
    let msg = socket::recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(io::Error::from)?;
    let mut fds = Vec::new();
    for control in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(raw) = control {
            for fd in raw {
                // SAFETY: the kernel installed `fd` in our table for this
                // message just now; nothing else refers to it, so it is
                // owned here, once.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    let truncated = msg.flags.intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
    Ok(Received { len: msg.bytes, fds, truncated })
}

/// Where a datagram goes: a socket file, or an abstract name (`@name` in
/// `NOTIFY_SOCKET`, given here without the `@`).
pub enum Address<'a> {
    Path(&'a Path),
    Abstract(&'a [u8]),
}

/// Sends `data` with `fds` to `to` from socket `sock`. The kernel adds our
/// credentials (pid, uid, gid) for a receiver that asks (`SO_PASSCRED`).
pub fn send_with_fds(sock: BorrowedFd<'_>, to: &Address<'_>, data: &[u8], fds: &[OwnedFd]) -> io::Result<()> {
    let addr = match to {
        Address::Path(path) => UnixAddr::new(*path),
        Address::Abstract(name) => UnixAddr::new_abstract(name),
    }
    .map_err(io::Error::from)?;
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let rights = [ControlMessage::ScmRights(&raw)];
    let controls: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &rights };
    socket::sendmsg(sock.as_raw_fd(), &[IoSlice::new(data)], controls, MsgFlags::empty(), Some(&addr))
        .map(drop)
        .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixDatagram;

    use super::*;

    #[test]
    fn a_descriptor_passes_with_its_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let sender = UnixDatagram::unbound().unwrap();
        let (mut read, write) = std::io::pipe().unwrap();
        send_with_fds(sender.as_fd(), &Address::Path(&path), b"FDSTORE=1", &[OwnedFd::from(write)]).unwrap();
        let mut buf = [0u8; 64];
        let got = recv_with_fds(receiver.as_fd(), &mut buf).unwrap();
        assert_eq!((&buf[..got.len], got.fds.len(), got.truncated), (&b"FDSTORE=1"[..], 1, false));
        // The descriptor received is the pipe's write end.
        let mut passed = std::fs::File::from(got.fds.into_iter().next().unwrap());
        passed.write_all(b"x").unwrap();
        drop(passed);
        let mut text = String::new();
        read.read_to_string(&mut text).unwrap();
        assert_eq!(text, "x");
    }
}
