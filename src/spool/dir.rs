//! A directory of the spool, held open: every file under it is reached
//! relative to its descriptor, one component at a time, with `O_NOFOLLOW`.
//! Nothing crashwatch writes can be steered elsewhere by a symbolic link
//! planted in the spool or by a directory renamed under it.
//!
//! [`SpoolDir::write_atomic`] is the one durable write: a temporary file
//! (`O_EXCL|O_NOFOLLOW`, 0600) in the same directory, fsync, `renameat` onto
//! the name, fsync of the directory. A reader sees the old content or the
//! new, never a torn file, across a kill or a power cut.
//!
//! Opening the spool's root checks who controls it: it must belong to the
//! effective user (root, when crashwatch runs as root) and be writable by no
//! group or other user, and no component of its path may be a symbolic link
//! (for root; other users may reach their spool through links above it).
//! Directories inside are held to the same rule.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, openat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use super::SpoolError;

/// A directory of the spool, opened safely (see the module docs). Clones
/// share the descriptor.
#[derive(Debug, Clone)]
pub struct SpoolDir {
    fd: Arc<OwnedFd>,
    path: PathBuf,
}

/// What to do when a directory is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// Create it, mode 0700.
    Create,
    /// Leave it missing (commands that only read create nothing).
    Absent,
}

fn errno_io(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> SpoolError + 'a {
    move |e| SpoolError::Io { action, path: path.to_path_buf(), source: errno_io(e) }
}

/// `name` must be one plain component: no `/`, not `.` or `..`.
fn check_name(name: &str) -> io::Result<&str> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("'{name}' is not a plain file name")));
    }
    Ok(name)
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY.union(OFlag::O_DIRECTORY).union(OFlag::O_NOFOLLOW).union(OFlag::O_CLOEXEC);

/// Writable by the group or by others.
fn lax(mode: u32) -> bool {
    mode & 0o022 != 0
}

fn is_symlink(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFLNK
}

impl SpoolDir {
    /// Opens the spool's root at `path`, checking it and the path to it (see
    /// the module docs). `Ok(None)`: it does not exist and `missing` said
    /// not to create it.
    pub fn open_root(path: &Path, missing: Missing) -> Result<Option<SpoolDir>, SpoolError> {
        let root = nix::unistd::geteuid().is_root();
        let components: Vec<Component<'_>> = path.components().collect();
        let Some((last, above)) = components.split_last() else {
            return Err(SpoolError::Unsafe { path: path.to_path_buf(), why: "it is an empty path".into() });
        };
        let mut here = PathBuf::new();
        let mut parent: Option<OwnedFd> = None;
        for component in above {
            here.push(component);
            let fd = match component {
                Component::RootDir => {
                    openat(AT_FDCWD, "/", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
                }
                other => {
                    let name = other.as_os_str();
                    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
                    let flags = if root { flags | OFlag::O_NOFOLLOW } else { flags };
                    let at = |fd: &Option<OwnedFd>, name: &OsStr| match fd {
                        Some(fd) => openat(fd, name, flags, Mode::empty()),
                        None => openat(AT_FDCWD, name, flags, Mode::empty()),
                    };
                    match at(&parent, name) {
                        Err(Errno::ENOENT) if missing == Missing::Create && other != &Component::ParentDir => {
                            let made = match &parent {
                                Some(fd) => mkdirat(fd, name, Mode::from_bits_truncate(0o755)),
                                None => mkdirat(AT_FDCWD, name, Mode::from_bits_truncate(0o755)),
                            };
                            match made {
                                Ok(()) | Err(Errno::EEXIST) => at(&parent, name),
                                Err(e) => Err(e),
                            }
                        }
                        Err(Errno::ENOENT) => return Ok(None),
                        other => other,
                    }
                }
            };
            let links = if root { Links::RefusedRoot } else { Links::Followed };
            let fd = fd.map_err(|e| explain(parent.as_ref(), component.as_os_str(), &here, e, links))?;
            parent = Some(fd);
        }
        here.push(last);
        let name = last.as_os_str();
        let open = |fd: &Option<OwnedFd>| match fd {
            Some(fd) => openat(fd, name, DIR_FLAGS, Mode::empty()),
            None => openat(AT_FDCWD, name, DIR_FLAGS, Mode::empty()),
        };
        let fd = match open(&parent) {
            Err(Errno::ENOENT) if missing == Missing::Create => {
                let made = match &parent {
                    Some(fd) => mkdirat(fd, name, Mode::from_bits_truncate(0o700)),
                    None => mkdirat(AT_FDCWD, name, Mode::from_bits_truncate(0o700)),
                };
                match made {
                    Ok(()) | Err(Errno::EEXIST) => open(&parent),
                    Err(e) => Err(e),
                }
            }
            Err(Errno::ENOENT) => return Ok(None),
            other => other,
        };
        let fd = fd.map_err(|e| explain(parent.as_ref(), name, &here, e, Links::RefusedRoot))?;
        let dir = SpoolDir { fd: Arc::new(fd), path: here };
        dir.check_owner()?;
        Ok(Some(dir))
    }

    /// Opens (or with [`Missing::Create`] creates) the directory `name` in
    /// this one. `Ok(None)`: missing, and not to be created.
    pub fn open_dir(&self, name: &str, missing: Missing) -> Result<Option<SpoolDir>, SpoolError> {
        let path = self.path.join(name);
        check_name(name).map_err(|source| SpoolError::Io { action: "open", path: path.clone(), source })?;
        let fd = match openat(self.fd(), name, DIR_FLAGS, Mode::empty()) {
            Err(Errno::ENOENT) if missing == Missing::Create => {
                match mkdirat(self.fd(), name, Mode::from_bits_truncate(0o700)) {
                    Ok(()) | Err(Errno::EEXIST) => openat(self.fd(), name, DIR_FLAGS, Mode::empty()),
                    Err(e) => Err(e),
                }
            }
            Err(Errno::ENOENT) => return Ok(None),
            other => other,
        };
        let fd = fd.map_err(|e| explain(Some(self.fd.as_ref()), OsStr::new(name), &path, e, Links::RefusedInside))?;
        let dir = SpoolDir { fd: Arc::new(fd), path };
        dir.check_owner()?;
        Ok(Some(dir))
    }

    /// [`SpoolDir::open_dir`] with [`Missing::Create`].
    pub fn create_dir(&self, name: &str) -> Result<SpoolDir, SpoolError> {
        self.open_dir(name, Missing::Create)?.ok_or_else(|| SpoolError::Io {
            action: "create",
            path: self.path.join(name),
            source: io::ErrorKind::NotFound.into(),
        })
    }

    /// Owned by the effective user and writable by no one else.
    fn check_owner(&self) -> Result<(), SpoolError> {
        let st = fstat(self.fd()).map_err(io_error("stat", &self.path))?;
        let euid = nix::unistd::geteuid().as_raw();
        if st.st_uid != euid {
            let (who, user) = match euid {
                0 => ("root".to_string(), "root".to_string()),
                n => (format!("uid {n}, who runs crashwatch"), n.to_string()),
            };
            return Err(SpoolError::Unsafe {
                path: self.path.clone(),
                why: format!(
                    "it belongs to uid {}, not to {who}: its owner could make crashwatch write where they choose; \
                     `chown {user} {}` if it is meant for crashwatch, or choose another with --spool-dir",
                    st.st_uid,
                    self.path.display()
                ),
            });
        }
        let mode = st.st_mode & 0o7777;
        if lax(mode) {
            return Err(SpoolError::Unsafe {
                path: self.path.clone(),
                why: format!(
                    "other users can write in it (mode {mode:04o}): `chmod 0700 {}`, or choose another with \
                     --spool-dir",
                    self.path.display()
                ),
            });
        }
        Ok(())
    }

    /// Takes away the group's and others' access (`fchmod` on the
    /// descriptor: never through a link).
    pub fn make_private(&self) -> Result<(), SpoolError> {
        let st = fstat(self.fd()).map_err(io_error("stat", &self.path))?;
        if st.st_mode & 0o077 != 0 {
            fchmod(self.fd(), Mode::from_bits_truncate(0o700)).map_err(io_error("set permissions of", &self.path))?;
        }
        Ok(())
    }

    fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// The same directory, known by `path` since it was renamed.
    pub fn renamed(self, path: PathBuf) -> SpoolDir {
        SpoolDir { fd: self.fd, path }
    }

    /// Where it is, for messages and for readers that take a path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` in it, for messages.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// A path that names this very directory however the spool is renamed
    /// meanwhile (`/proc/self/fd/N`), for code that takes a path. Valid in
    /// this process only, while the directory is held.
    pub fn fd_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    /// Opens file `name` with `flags` (plus `O_NOFOLLOW|O_CLOEXEC`).
    fn open_file(&self, name: &str, flags: OFlag, mode: u32) -> io::Result<File> {
        check_name(name)?;
        let fd = openat(self.fd(), name, flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::from_bits_truncate(mode))
            .map_err(errno_io)?;
        Ok(File::from(fd))
    }

    /// Opens file `name` for reading; a symbolic link is an error (`ELOOP`).
    pub fn open_read(&self, name: &str) -> io::Result<File> {
        self.open_file(name, OFlag::O_RDONLY, 0)
    }

    /// Reads file `name`; `None` if it does not exist.
    pub fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        match self.open_read(name) {
            Ok(mut file) => {
                let mut bytes = Vec::new();
                io::Read::read_to_end(&mut file, &mut bytes)?;
                Ok(Some(bytes))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A new temporary file (0600) in this directory, to be written and
    /// given its name with [`SpoolDir::persist`]; its name.
    pub fn create_temp(&self) -> io::Result<(File, String)> {
        loop {
            let name = format!(".tmp-{:016x}", rand::random::<u64>());
            match self.open_file(&name, OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL, 0o600) {
                Ok(file) => return Ok((file, name)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Gives the fsync'd temporary file `temp` its name `name` (replacing
    /// any file of that name) and makes the rename durable.
    pub fn persist(&self, temp: &str, name: &str) -> io::Result<()> {
        check_name(name)?;
        renameat(self.fd(), temp, self.fd(), name).map_err(errno_io)?;
        self.sync()
    }

    /// Replaces file `name` with `bytes`, atomically and durably (see the
    /// module docs); mode 0600.
    pub fn write_atomic(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        check_name(name)?;
        let (mut file, temp) = self.create_temp()?;
        let written = file.write_all(bytes).and_then(|()| file.sync_all());
        let done = written.and_then(|()| self.persist(&temp, name));
        if done.is_err() {
            let _ = self.remove(&temp);
        }
        done
    }

    /// Creates file `name` (0600) for writing; fails if it exists.
    pub fn create_new(&self, name: &str) -> io::Result<File> {
        self.open_file(name, OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL, 0o600)
    }

    /// Removes file `name`; false if it was not there.
    pub fn remove(&self, name: &str) -> io::Result<bool> {
        check_name(name)?;
        match unlinkat(self.fd(), name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(errno_io(e)),
        }
    }

    /// Removes the empty directory `name`; false if it was not there.
    pub fn remove_dir(&self, name: &str) -> io::Result<bool> {
        check_name(name)?;
        match unlinkat(self.fd(), name, UnlinkatFlags::RemoveDir) {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(errno_io(e)),
        }
    }

    /// Removes `name` and, if it is a directory, everything in it (links
    /// are removed, never followed).
    pub fn remove_all(&self, name: &str) -> io::Result<()> {
        match self.stat(name)? {
            None => Ok(()),
            Some(st) if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR => {
                let inner = match openat(self.fd(), name, DIR_FLAGS, Mode::empty()) {
                    Ok(fd) => SpoolDir { fd: Arc::new(fd), path: self.join(name) },
                    Err(Errno::ENOENT) => return Ok(()),
                    Err(e) => return Err(errno_io(e)),
                };
                for (entry, _) in inner.entries()? {
                    inner.remove_all(&entry)?;
                }
                self.remove_dir(name).map(drop)
            }
            Some(_) => self.remove(name).map(drop),
        }
    }

    /// Renames `name` here to `to_name` in `to` (same filesystem); the
    /// caller makes it durable with [`SpoolDir::sync`] of both.
    pub fn rename(&self, name: &str, to: &SpoolDir, to_name: &str) -> io::Result<()> {
        check_name(name)?;
        check_name(to_name)?;
        renameat(self.fd(), name, to.fd(), to_name).map_err(errno_io)
    }

    /// The names in the directory (not `.` and `..`) and whether each is a
    /// directory (`None` when the file system does not say).
    pub fn entries(&self) -> io::Result<Vec<(String, Option<bool>)>> {
        let mut dir = nix::dir::Dir::openat(self.fd(), ".", DIR_FLAGS, Mode::empty()).map_err(errno_io)?;
        let mut out = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(errno_io)?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            // Names crashwatch did not make (not UTF-8) are skipped.
            let Ok(name) = std::str::from_utf8(name) else { continue };
            let is_dir = entry.file_type().map(|t| t == nix::dir::Type::Directory);
            out.push((name.to_owned(), is_dir));
        }
        Ok(out)
    }

    /// `lstat` of `name`; `None` if it does not exist.
    pub fn stat(&self, name: &str) -> io::Result<Option<FileStat>> {
        check_name(name)?;
        match fstatat(self.fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(errno_io(e)),
        }
    }

    /// Whether `name` exists (as anything).
    pub fn exists(&self, name: &str) -> io::Result<bool> {
        self.stat(name).map(|st| st.is_some())
    }

    /// Opens (creating, 0600) the lock file `name` and takes an exclusive
    /// `flock` on it: waiting for it when `wait`, else `None` if another
    /// holds it. The lock lasts as long as the returned file.
    pub fn lock(&self, name: &str, wait: bool) -> io::Result<Option<File>> {
        let file = self.open_file(name, OFlag::O_RDWR | OFlag::O_CREAT, 0o600)?;
        lock_file(file, wait)
    }

    /// An exclusive `flock` on the directory itself (on a descriptor of its
    /// own: a lock belongs to one open file). `None` if another holds it.
    pub fn try_lock_self(&self) -> io::Result<Option<File>> {
        let fd = openat(self.fd(), ".", DIR_FLAGS, Mode::empty()).map_err(errno_io)?;
        lock_file(File::from(fd), false)
    }

    /// Makes renames and removals in the directory durable.
    pub fn sync(&self) -> io::Result<()> {
        nix::unistd::fsync(self.fd()).map_err(errno_io)
    }

    /// The file system's size and free space (for unprivileged users), bytes.
    pub fn filesystem(&self) -> io::Result<(u64, u64)> {
        let st = nix::sys::statvfs::fstatvfs(self.fd()).map_err(errno_io)?;
        let unit = st.fragment_size();
        Ok((st.blocks().saturating_mul(unit), st.blocks_available().saturating_mul(unit)))
    }

    /// Bytes on disk of everything in the directory (as `du` counts them).
    pub fn disk_usage(&self) -> io::Result<u64> {
        let mut total = 0u64;
        for (name, _) in self.entries()? {
            let Some(st) = self.stat(&name)? else { continue };
            total = total.saturating_add(st.st_blocks as u64 * 512);
            if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR
                && let Some(inner) = self.open_dir_unchecked(&name)?
            {
                total = total.saturating_add(inner.disk_usage()?);
            }
        }
        Ok(total)
    }

    /// A directory inside, without the owner check (for reading sizes).
    fn open_dir_unchecked(&self, name: &str) -> io::Result<Option<SpoolDir>> {
        check_name(name)?;
        match openat(self.fd(), name, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => Ok(Some(SpoolDir { fd: Arc::new(fd), path: self.join(name) })),
            Err(Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR) => Ok(None),
            Err(e) => Err(errno_io(e)),
        }
    }
}

fn lock_file(file: File, wait: bool) -> io::Result<Option<File>> {
    if wait {
        file.lock()?;
        return Ok(Some(file));
    }
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// How a link met on the way is treated.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Links {
    /// On the path to the spool, for an unprivileged user.
    Followed,
    /// The spool itself, or on the path to it for root.
    RefusedRoot,
    /// Inside the spool.
    RefusedInside,
}

/// The error for a component that could not be opened: a link is named as
/// such, whatever errno the kernel chose (`ELOOP`, or `ENOTDIR` with
/// `O_PATH`).
fn explain(parent: Option<&OwnedFd>, name: &OsStr, path: &Path, e: Errno, links: Links) -> SpoolError {
    let st = match parent {
        Some(fd) => fstatat(fd, name, AtFlags::AT_SYMLINK_NOFOLLOW),
        None => fstatat(AT_FDCWD, name, AtFlags::AT_SYMLINK_NOFOLLOW),
    };
    if links != Links::Followed && st.as_ref().is_ok_and(is_symlink) {
        let target = std::fs::canonicalize(path).ok().filter(|real| real.is_dir());
        let fix = match (links, target) {
            (Links::RefusedRoot, Some(real)) => {
                format!("remove it, or if reports belong in {0}, say so: --spool-dir {0}", real.display())
            }
            (Links::RefusedRoot, None) => "remove it, or choose another directory with --spool-dir".to_string(),
            _ => "remove it (crashwatch makes its own)".to_string(),
        };
        return SpoolError::Unsafe {
            path: path.to_path_buf(),
            why: format!("{} is a symbolic link, and crashwatch follows none in its spool; {fix}", path.display()),
        };
    }
    if e == Errno::ENOTDIR {
        return SpoolError::Unsafe { path: path.to_path_buf(), why: format!("{} is not a directory", path.display()) };
    }
    SpoolError::Io { action: "open", path: path.to_path_buf(), source: errno_io(e) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn root(tmp: &Path) -> SpoolDir {
        SpoolDir::open_root(&tmp.join("spool"), Missing::Create).unwrap().unwrap()
    }

    #[test]
    fn creates_a_private_root_and_writes_atomically() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = root(tmp.path());
        assert_eq!(std::fs::metadata(dir.path()).unwrap().mode() & 0o777, 0o700);
        dir.write_atomic("f.json", b"one").unwrap();
        dir.write_atomic("f.json", b"two").unwrap();
        assert_eq!(dir.read("f.json").unwrap().unwrap(), b"two");
        assert_eq!(std::fs::metadata(dir.join("f.json")).unwrap().mode() & 0o777, 0o600);
        let names: Vec<String> = dir.entries().unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["f.json"]);
    }

    #[test]
    fn a_missing_root_is_not_created_unless_asked() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(SpoolDir::open_root(&tmp.path().join("a/b"), Missing::Absent).unwrap().is_none());
        assert!(!tmp.path().join("a").exists());
    }

    #[test]
    fn links_are_refused_and_never_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, tmp.path().join("link")).unwrap();
        let e = SpoolDir::open_root(&tmp.path().join("link"), Missing::Create).unwrap_err();
        assert!(e.to_string().contains("is a symbolic link"), "{e}");
        let dir = root(tmp.path());
        std::os::unix::fs::symlink(&elsewhere, dir.join("outbox")).unwrap();
        let e = dir.open_dir("outbox", Missing::Create).unwrap_err();
        assert!(e.to_string().contains("is a symbolic link"), "{e}");
        std::os::unix::fs::symlink(elsewhere.join("f"), dir.join("f.json")).unwrap();
        // Replacing the link is fine (rename replaces the name), reading
        // through it is not.
        assert_eq!(dir.read("f.json").unwrap_err().raw_os_error(), Some(libc::ELOOP));
        dir.write_atomic("f.json", b"x").unwrap();
        assert!(std::fs::read_dir(&elsewhere).unwrap().next().is_none(), "nothing written through a link");
        assert_eq!(std::fs::metadata(elsewhere).unwrap().permissions().mode() & 0o777, 0o755);
    }

    #[test]
    fn a_directory_others_can_write_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = tmp.path().join("spool");
        std::fs::create_dir(&spool).unwrap();
        std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = SpoolDir::open_root(&spool, Missing::Create).unwrap_err();
        assert!(e.to_string().contains("other users can write in it (mode 0777)"), "{e}");
    }

    #[test]
    fn names_are_single_components() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = root(tmp.path());
        for bad in ["", ".", "..", "a/b", "../x"] {
            assert!(dir.write_atomic(bad, b"x").is_err(), "{bad}");
        }
    }

    #[test]
    fn remove_all_removes_links_not_their_targets() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = root(tmp.path());
        let target = tmp.path().join("keep");
        std::fs::write(&target, b"x").unwrap();
        let sub = dir.create_dir("r").unwrap();
        sub.write_atomic("a", b"1").unwrap();
        std::os::unix::fs::symlink(&target, sub.join("l")).unwrap();
        dir.remove_all("r").unwrap();
        assert!(!dir.exists("r").unwrap());
        assert!(target.exists());
    }

    #[test]
    fn locks_exclude_each_other() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = root(tmp.path());
        let held = dir.lock(".lock", false).unwrap();
        assert!(held.is_some());
        assert!(dir.lock(".lock", false).unwrap().is_none());
        drop(held);
        assert!(dir.lock(".lock", false).unwrap().is_some());
        let own = dir.try_lock_self().unwrap();
        assert!(own.is_some());
        assert!(dir.try_lock_self().unwrap().is_none());
    }
}
