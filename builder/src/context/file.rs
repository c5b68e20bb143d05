//! Reading the build's own files (the Dockerfile, `.dockerignore`) out of
//! the context.
//!
//! A context is untrusted: its `Dockerfile` may be a symlink to
//! `/proc/self/environ` or `~/.docker/config.json`, whose content a parse
//! error would then print. A file named inside the context is opened with
//! `openat2(RESOLVE_IN_ROOT)` relative to the context directory, so its
//! symlinks are followed as if the context were `/` (BuildKit reads the
//! Dockerfile from its context the same way) and never reach the host.
//! Whatever is read is bounded in size and must be a regular file: a FIFO
//! or a device is refused without being opened for reading.

use std::io::{self, Read};
use std::path::{Component, Path};

use rustix::fs::{FileType, Mode, OFlags, RawMode, ResolveFlags};

/// Larger than any real Dockerfile or ignore file by far.
pub const MAX_CONTEXT_FILE: u64 = 8 << 20;

/// Reads `path`: inside `context_root` when it lies below it (symlinks
/// resolved inside the context), else as the host path the user named
/// (`--dockerfile=/elsewhere/Dockerfile`). Either way at most
/// [`MAX_CONTEXT_FILE`] bytes of a regular file.
pub fn read_build_file(context_root: &Path, path: &Path) -> io::Result<Vec<u8>> {
    let file = match path.strip_prefix(context_root) {
        Ok(rel) if rel.components().all(|c| matches!(c, Component::Normal(_))) => {
            open_in_context(context_root, rel)?
        }
        _ => rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )?,
    };
    let stat = rustix::fs::fstat(&file)?;
    if FileType::from_raw_mode(stat.st_mode as RawMode) != FileType::RegularFile {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::from(file)
        .take(MAX_CONTEXT_FILE + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_CONTEXT_FILE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {} MiB", MAX_CONTEXT_FILE >> 20),
        ));
    }
    Ok(bytes)
}

/// Opens `rel` below `context_root` as if the context were the root: `..`
/// and absolute symlinks stay inside it. `O_PATH` first, so a FIFO is never
/// opened for reading; reopened for reading once known to be a regular file.
fn open_in_context(context_root: &Path, rel: &Path) -> io::Result<std::os::fd::OwnedFd> {
    let root = rustix::fs::open(
        context_root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    let found = loop {
        match rustix::fs::openat2(
            &root,
            rel,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            resolve,
        ) {
            Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => continue,
            other => break other?,
        }
    };
    let stat = rustix::fs::fstat(&found)?;
    if FileType::from_raw_mode(stat.st_mode as RawMode) != FileType::RegularFile {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    loop {
        match rustix::fs::openat2(
            &root,
            rel,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
            resolve,
        ) {
            Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}

/// At most `max` characters of `text`, marked when cut: what an error
/// message may quote of a file's content.
pub fn excerpt(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_inside_the_context() {
        let dir = tempfile::tempdir().unwrap();
        let context = dir.path().join("context");
        std::fs::create_dir_all(context.join("etc")).unwrap();
        std::fs::write(dir.path().join("secret"), "TOKEN=outside\n").unwrap();
        std::fs::write(context.join("etc/passwd"), "FROM scratch\n").unwrap();
        // Absolute and climbing links: both stay in the context.
        symlink("/etc/passwd", context.join("Dockerfile")).unwrap();
        symlink("../secret", context.join("Climbing")).unwrap();
        symlink(dir.path().join("secret"), context.join("Absolute")).unwrap();
        assert_eq!(
            read_build_file(&context, &context.join("Dockerfile")).unwrap(),
            b"FROM scratch\n"
        );
        for name in ["Climbing", "Absolute"] {
            let err = read_build_file(&context, &context.join(name)).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound, "{name}: {err}");
        }
    }

    #[test]
    fn fifos_and_huge_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("Dockerfile");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        // Would block forever if opened for reading.
        let err = read_build_file(dir.path(), &fifo).unwrap_err();
        assert_eq!(err.to_string(), "not a regular file");
        let big = dir.path().join("big");
        let file = std::fs::File::create(&big).unwrap();
        file.set_len(MAX_CONTEXT_FILE + 1).unwrap();
        let err = read_build_file(dir.path(), &big).unwrap_err();
        assert_eq!(err.to_string(), "larger than 8 MiB");
    }

    #[test]
    fn excerpts_are_cut_on_characters() {
        assert_eq!(excerpt("short", 10), "short");
        assert_eq!(excerpt("AWS_SECRET_ACCESS_KEY=abc", 10), "AWS_SECRET…");
        assert_eq!(excerpt("ééééé", 2), "éé…");
    }
}
