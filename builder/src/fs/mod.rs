//! Root filesystems: unpacking layers, whiteouts, in-root path resolution
//! and user lookup.
//!
//! Everything here treats a root directory as an image's `/`: paths and
//! symlinks are resolved inside it as if chrooted (`in_root`), so a layer or
//! an image's symlinks can never reach the host.

mod error;
pub mod in_root;
pub mod inplace;
pub mod mounts;
pub mod root_dir;
pub mod unpack;
pub mod users;
pub mod whiteout;

pub use error::FsError;
pub use in_root::{
    EntryKind, clean_image_path, create_dir_all_in_root, entry_kind, entry_kind_nofollow,
    missing_dirs_in_root, resolve_in_root, resolve_in_root_nofollow,
};
pub use unpack::{
    Compression, UnpackOptions, UnpackStats, detect_compression, unpack_layer, unpack_layer_file,
};
pub use users::{ExecUser, resolve_exec_user, resolve_user};

/// Opens `source` for reading only when it is a regular file, as it was
/// when it was inspected: a symlink put in its place is not followed (it could
/// lead anywhere on the host) and a FIFO or device never blocks or reads.
pub fn open_regular(source: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(source)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "no longer a regular file",
        ));
    }
    Ok(file)
}
