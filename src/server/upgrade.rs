//! Where the zero-downtime upgrade socket lives (docs/security.md, case 78). On SIGQUIT the running
//! process sends its listening sockets to whoever listens on that path: a path in a directory
//! others can write to would let a local user bind it first and receive them. So the socket goes in
//! a directory only this user (or root) can write to, created 0700 when it is the default.
//!
//! Default, the first that is or can be made ours: `$XDG_RUNTIME_DIR/registry-token/`,
//! `/run/registry-token/`, `$HOME/.local/state/registry-token/`; the socket is `upgrade.sock`.

use std::ffi::OsString;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The socket's file name in the default directory.
pub const SOCKET_NAME: &str = "upgrade.sock";

/// Why no upgrade socket path could be used.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeDirError {
    #[error("no private directory for the upgrade socket: none of {0} exists as ours or can be created; set server.upgradeSocket")]
    NoPlace(String),
    #[error("cannot create {0}: {1}")]
    Create(PathBuf, std::io::Error),
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("{dir} belongs to uid {owner}, neither this user (uid {me}) nor root")]
    Owner { dir: PathBuf, owner: u32, me: u32 },
    #[error("{dir} is writable by group or others (mode {mode:03o}): another user could bind the upgrade socket first")]
    Writable { dir: PathBuf, mode: u32 },
}

/// The default directories, in order of preference, from the environment's values.
pub fn default_dirs(xdg_runtime_dir: Option<OsString>, home: Option<OsString>) -> Vec<PathBuf> {
    let absolute = |v: Option<OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    let mut dirs = Vec::new();
    if let Some(xdg) = absolute(xdg_runtime_dir) {
        dirs.push(xdg.join("registry-token"));
    }
    dirs.push(PathBuf::from("/run/registry-token"));
    if let Some(home) = absolute(home) {
        dirs.push(home.join(".local/state/registry-token"));
    }
    dirs
}

fn euid() -> u32 {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Refuses a directory that another user could write to: owned by someone else than us or
/// root, or writable by group or others.
pub fn check_private(dir: &Path, meta: &fs::Metadata) -> Result<(), UpgradeDirError> {
    if !meta.is_dir() {
        return Err(UpgradeDirError::NotADirectory(dir.into()));
    }
    let (owner, me) = (meta.uid(), euid());
    if owner != me && owner != 0 {
        return Err(UpgradeDirError::Owner {
            dir: dir.into(),
            owner,
            me,
        });
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(UpgradeDirError::Writable {
            dir: dir.into(),
            mode,
        });
    }
    Ok(())
}

/// Creates `dir` with mode 0700 (its parents as usual); an existing one is left as it is.
fn create_private(dir: &Path) -> std::io::Result<()> {
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent)?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// The directory of a configured socket path: created 0700 when missing, and refused when
/// another user could write to it.
pub fn configured(socket: &Path) -> Result<PathBuf, UpgradeDirError> {
    let dir = socket.parent().unwrap_or(Path::new("/"));
    if !dir.exists() {
        create_private(dir).map_err(|e| UpgradeDirError::Create(dir.into(), e))?;
    }
    let meta = fs::metadata(dir).map_err(|e| UpgradeDirError::Read(dir.into(), e))?;
    check_private(dir, &meta)?;
    Ok(socket.into())
}

/// The first of `dirs` that is ours (or can be created, 0700), with the socket's name in it.
/// A directory of someone else's is passed over; one of ours that others can write to is an
/// error, as is a symbolic link in place of the directory.
pub fn first_private(dirs: &[PathBuf]) -> Result<PathBuf, UpgradeDirError> {
    for dir in dirs {
        if fs::symlink_metadata(dir).is_err() && create_private(dir).is_err() {
            continue;
        }
        let meta = fs::symlink_metadata(dir).map_err(|e| UpgradeDirError::Read(dir.into(), e))?;
        if meta.is_dir() && meta.uid() != euid() {
            continue;
        }
        check_private(dir, &meta)?;
        return Ok(dir.join(SOCKET_NAME));
    }
    let tried: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    Err(UpgradeDirError::NoPlace(tried.join(", ")))
}

/// The upgrade socket path: `server.upgradeSocket` when set, else the default; its directory
/// is ready and private.
pub fn socket_path(configured_path: Option<&Path>) -> Result<PathBuf, UpgradeDirError> {
    match configured_path {
        Some(path) => configured(path),
        None => first_private(&default_dirs(
            std::env::var_os("XDG_RUNTIME_DIR"),
            std::env::var_os("HOME"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o777
    }

    /// The defaults in order, relative values ignored.
    #[test]
    fn default_dirs_in_order() {
        let run = PathBuf::from("/run/registry-token");
        let cases: &[(Option<&str>, Option<&str>, Vec<PathBuf>)] = &[
            (
                Some("/run/user/1000"),
                Some("/home/a"),
                vec![
                    "/run/user/1000/registry-token".into(),
                    run.clone(),
                    "/home/a/.local/state/registry-token".into(),
                ],
            ),
            (
                None,
                Some("/home/a"),
                vec![run.clone(), "/home/a/.local/state/registry-token".into()],
            ),
            (Some("relative"), Some(""), vec![run.clone()]),
            (None, None, vec![run.clone()]),
        ];
        for (xdg, home, want) in cases {
            assert_eq!(
                &default_dirs(xdg.map(OsString::from), home.map(OsString::from)),
                want,
                "XDG_RUNTIME_DIR={xdg:?} HOME={home:?}"
            );
        }
    }

    /// The first usable default is created 0700; a directory others can write to is refused,
    /// a path that cannot be created is passed over.
    #[test]
    fn default_directory_is_private() {
        let root = tempfile::tempdir().unwrap();
        let blocked = root.path().join("file");
        fs::write(&blocked, "not a directory").unwrap();
        let dir = root.path().join("state/registry-token");
        let path = first_private(&[blocked.join("registry-token"), dir.clone()]).unwrap();
        assert_eq!(path, dir.join(SOCKET_NAME));
        assert_eq!(mode(&dir), 0o700);
        // Again: the existing private directory is used as it is.
        assert_eq!(first_private(std::slice::from_ref(&dir)).unwrap(), path);

        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let refused = first_private(std::slice::from_ref(&dir)).unwrap_err();
        assert!(
            matches!(refused, UpgradeDirError::Writable { .. }),
            "{refused}"
        );

        let link = root.path().join("link");
        std::os::unix::fs::symlink(root.path(), &link).unwrap();
        let refused = first_private(&[link]).unwrap_err();
        assert!(
            matches!(refused, UpgradeDirError::NotADirectory(_)),
            "{refused}"
        );

        let none = first_private(&[blocked.join("x")]).unwrap_err();
        assert!(matches!(none, UpgradeDirError::NoPlace(_)), "{none}");
    }

    /// A configured path: its missing directory is created 0700; one in a directory anyone
    /// can write to (the shared temporary directory) is refused.
    #[test]
    fn configured_path() {
        let root = tempfile::tempdir().unwrap();
        let socket = root.path().join("sockets/upgrade.sock");
        assert_eq!(configured(&socket).unwrap(), socket);
        assert_eq!(mode(&root.path().join("sockets")), 0o700);

        let refused = configured(Path::new("/tmp/registry-token-upgrade.sock")).unwrap_err();
        assert!(
            matches!(refused, UpgradeDirError::Writable { .. }),
            "{refused}"
        );
    }
}
