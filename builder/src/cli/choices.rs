//! The flag spellings of the engine's enums (`--driver`, `--emulation`,
//! `--isolation`, `--oci-mode`, `--compression`, `--snapshot-mode`,
//! `--progress`): the engine's types know nothing of clap; this is where
//! the command line gives them names, aliases and help.

use clap::ValueEnum;
use clap::builder::PossibleValue;

use crate::image::{Compression, OciMode};
use crate::options::{Driver, Emulation, Isolation};
use crate::progress::Progress;
use crate::snapshot::SnapshotMode;

/// Implements [`ValueEnum`] for `$type`: each variant with its name, its
/// aliases and the help line `--help` shows beside it.
macro_rules! flag_values {
    ($type:ty { $($variant:ident => $name:literal $([$($alias:literal),*])? $(: $help:literal)?),+ $(,)? }) => {
        impl ValueEnum for $type {
            fn value_variants<'a>() -> &'a [Self] {
                &[$(<$type>::$variant),+]
            }

            fn to_possible_value(&self) -> Option<PossibleValue> {
                Some(match self {
                    $(<$type>::$variant => PossibleValue::new($name)
                        $($(.alias($alias))*)?
                        $(.help($help))?,)+
                    #[allow(unreachable_patterns)]
                    _ => return None,
                })
            }
        }
    };
}

flag_values!(Driver {
    Local => "local",
    K8s => "k8s",
    Ci => "ci",
});

flag_values!(Emulation {
    Auto => "auto": "The qemu-user interpreter binfmt_misc has registered, if any, with a warning; refused without one",
    None => "none": "Refused",
    Qemu => "qemu": "The registered interpreter, which must be there",
});

flag_values!(Isolation {
    // `chroot` was the sandbox's name before it was one.
    Chroot => "sandbox" ["chroot"],
    Inplace => "inplace",
});

flag_values!(OciMode {
    Oci => "oci",
    Docker => "docker",
    Auto => "auto": "OCI, falling back to Docker where a registry rejects OCI manifests",
});

// `Compression::None` (uncompressed blobs of other tools' images) is not a
// value of `--compression`.
flag_values!(Compression {
    Gzip => "gzip",
    Zstd => "zstd",
});

flag_values!(SnapshotMode {
    Full => "full": "Metadata, plus a content fingerprint where metadata cannot decide",
    Redo => "redo": "Metadata only: mode, uid, gid, size, mtime, ctime, inode",
    Time => "time": "Modification time only",
});

flag_values!(Progress {
    Auto => "auto": "Bars when stderr is a terminal and the log is text, else plain",
    Plain => "plain": "One line per blob pulled or pushed",
    Tty => "tty": "Live bars, also when stderr does not look like a terminal",
});

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_parses_to_its_value() {
        assert_eq!(Isolation::from_str("sandbox", false), Ok(Isolation::Chroot));
        assert_eq!(Isolation::from_str("chroot", false), Ok(Isolation::Chroot));
        assert_eq!(
            Isolation::from_str("inplace", false),
            Ok(Isolation::Inplace)
        );
        assert_eq!(Driver::from_str("k8s", false), Ok(Driver::K8s));
        assert_eq!(Compression::from_str("zstd", false), Ok(Compression::Zstd));
        assert!(Compression::from_str("none", false).is_err());
        assert_eq!(
            SnapshotMode::from_str("redo", false),
            Ok(SnapshotMode::Redo)
        );
        assert_eq!(Progress::from_str("tty", false), Ok(Progress::Tty));
        assert_eq!(OciMode::from_str("auto", false), Ok(OciMode::Auto));
        assert_eq!(Emulation::from_str("qemu", false), Ok(Emulation::Qemu));
    }
}
