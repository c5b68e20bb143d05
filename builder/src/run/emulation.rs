//! `--emulation=qemu`: whether this machine's kernel runs another
//! architecture's executables through a qemu-user interpreter.
//!
//! RUN needs nothing of its own to emulate: when binfmt_misc has an entry
//! whose magic matches the ELF header of the image's binaries, the kernel
//! starts the registered interpreter for them. The entry must carry the F
//! (fix-binary) flag: the kernel then opened the interpreter when it was
//! registered, and it works inside RUN's chroot, where the image has no
//! `/usr/libexec/qemu-binfmt`. So all kiln does is check, before any work,
//! that such an entry exists for every foreign architecture a build runs
//! code for, and say exactly what is missing otherwise.
//!
//! The decision is pure ([`elf_machine`], [`parse_entry`],
//! [`choose_entry`]); [`find_interpreter`] only reads the entries.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::platform::Platform;

/// Where the kernel shows binfmt_misc's entries.
pub const BINFMT_MISC_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// Environment variable naming another directory to read binfmt_misc's
/// entries from, in its format: for tests that need a machine with no
/// (or some) interpreters registered without changing this one's.
pub const BINFMT_MISC_DIR_ENV: &str = "KILN_BINFMT_MISC_DIR";

/// The binfmt_misc directory to read: [`BINFMT_MISC_DIR_ENV`]'s value when
/// set and not empty (`value`), else [`BINFMT_MISC_DIR`].
pub fn binfmt_misc_dir(value: Option<&std::ffi::OsStr>) -> PathBuf {
    match value {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(BINFMT_MISC_DIR),
    }
}

/// `e_type` of a position-dependent executable; binfmt_misc masks of
/// qemu-user entries accept `ET_DYN` (3) as well.
const ET_EXEC: u16 = 2;

/// What tells one architecture's ELF executables from another's: the fields
/// of the ELF header that binfmt_misc magic entries compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElfMachine {
    /// `EI_CLASS`: 32- or 64-bit.
    pub bits: u8,
    /// `EI_DATA`: byte order of the header's multi-byte fields.
    pub big_endian: bool,
    /// `e_machine` (`EM_AARCH64` is 183).
    pub machine: u16,
    /// The qemu-user target that runs it (`qemu-aarch64`, whose Debian
    /// registration line is `/usr/lib/binfmt.d/qemu-aarch64.conf`).
    pub qemu_target: &'static str,
}

impl ElfMachine {
    /// The first 20 bytes of an executable for this machine (`e_ident`,
    /// `e_type`, `e_machine`): what a binfmt_misc magic is matched against.
    pub fn header(&self) -> [u8; 20] {
        let mut header = [0u8; 20];
        header[..4].copy_from_slice(b"\x7fELF");
        header[4] = if self.bits == 64 { 2 } else { 1 };
        header[5] = if self.big_endian { 2 } else { 1 };
        header[6] = 1; // EV_CURRENT
        let (e_type, e_machine) = if self.big_endian {
            (ET_EXEC.to_be_bytes(), self.machine.to_be_bytes())
        } else {
            (ET_EXEC.to_le_bytes(), self.machine.to_le_bytes())
        };
        header[16..18].copy_from_slice(&e_type);
        header[18..20].copy_from_slice(&e_machine);
        header
    }
}

/// The ELF machine of `platform`'s executables, `None` for an
/// architecture kiln has no entry for (or a non-Linux platform).
pub fn elf_machine(platform: &Platform) -> Option<ElfMachine> {
    if platform.os != "linux" {
        return None;
    }
    let (bits, big_endian, machine, qemu_target) = match platform.architecture.as_str() {
        "amd64" => (64, false, 62, "x86_64"),
        "386" => (32, false, 3, "i386"),
        "arm64" => (64, false, 183, "aarch64"),
        "arm" => (32, false, 40, "arm"),
        "s390x" => (64, true, 22, "s390x"),
        "ppc64le" => (64, false, 21, "ppc64le"),
        "ppc64" => (64, true, 21, "ppc64"),
        "riscv64" => (64, false, 243, "riscv64"),
        "mips64le" => (64, false, 8, "mips64el"),
        "mips64" => (64, true, 8, "mips64"),
        "mipsle" => (32, false, 8, "mipsel"),
        "mips" => (32, true, 8, "mips"),
        "loong64" => (64, false, 258, "loongarch64"),
        _ => return None,
    };
    Some(ElfMachine {
        bits,
        big_endian,
        machine,
        qemu_target,
    })
}

/// How an entry recognises the files it handles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recognition {
    /// `magic` at `offset`, compared under `mask` (all bits when absent).
    Magic {
        offset: usize,
        magic: Vec<u8>,
        mask: Option<Vec<u8>>,
    },
    /// A file name extension (never an ELF binary of an image).
    Extension(String),
}

/// One binfmt_misc entry, as the kernel shows it in
/// `/proc/sys/fs/binfmt_misc/NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BinfmtEntry {
    pub name: String,
    pub enabled: bool,
    pub interpreter: String,
    /// The flag letters (`P`, `O`, `C`, `F`).
    pub flags: String,
    pub recognition: Recognition,
}

impl BinfmtEntry {
    /// Whether the kernel hands a file starting with `header` to this
    /// entry's interpreter (when enabled).
    pub fn matches(&self, header: &[u8]) -> bool {
        let Recognition::Magic {
            offset,
            magic,
            mask,
        } = &self.recognition
        else {
            return false;
        };
        let Some(window) = header.get(*offset..offset + magic.len()) else {
            return false;
        };
        window
            .iter()
            .zip(magic)
            .enumerate()
            .all(|(i, (have, want))| {
                let bits = mask
                    .as_ref()
                    .and_then(|m| m.get(i))
                    .copied()
                    .unwrap_or(0xff);
                have & bits == want & bits
            })
    }

    /// `F`: the interpreter was opened at registration, so it is found
    /// from inside a chroot.
    pub fn fix_binary(&self) -> bool {
        self.flags.contains('F')
    }
}

/// Reads an entry's text (`enabled`, `interpreter …`, `flags: …`,
/// `offset …`, `magic …`, `mask …`, or `extension .…`). `None` for text
/// that is not an entry (kiln then ignores the file).
pub fn parse_entry(name: &str, text: &str) -> Option<BinfmtEntry> {
    let mut enabled = None;
    let mut interpreter = None;
    let mut flags = String::new();
    let mut offset = 0usize;
    let mut magic = None;
    let mut mask = None;
    let mut extension = None;
    for line in text.lines() {
        let line = line.trim_end();
        match line {
            "enabled" => enabled = Some(true),
            "disabled" => enabled = Some(false),
            _ => {}
        }
        if let Some(value) = line.strip_prefix("interpreter ") {
            interpreter = Some(value.to_string());
        } else if let Some(value) = line.strip_prefix("flags:") {
            flags = value.trim().to_string();
        } else if let Some(value) = line.strip_prefix("offset ") {
            offset = value.trim().parse().ok()?;
        } else if let Some(value) = line.strip_prefix("magic ") {
            magic = Some(hex::decode(value.trim()).ok()?);
        } else if let Some(value) = line.strip_prefix("mask ") {
            mask = Some(hex::decode(value.trim()).ok()?);
        } else if let Some(value) = line.strip_prefix("extension ") {
            extension = Some(value.trim().to_string());
        }
    }
    let recognition = match (magic, extension) {
        (Some(magic), None) => Recognition::Magic {
            offset,
            magic,
            mask,
        },
        (None, Some(extension)) => Recognition::Extension(extension),
        _ => return None,
    };
    Some(BinfmtEntry {
        name: name.to_string(),
        enabled: enabled?,
        interpreter: interpreter?,
        flags,
        recognition,
    })
}

/// Why no entry will run a machine's executables inside RUN's chroot.
#[derive(Debug, PartialEq, Eq)]
pub enum NoEntry {
    /// No entry, enabled or not, matches.
    Missing,
    /// Matching entries exist, all disabled (names).
    Disabled(Vec<String>),
    /// An enabled matching entry lacks the F flag (its name and
    /// interpreter): the kernel may pick it, and its interpreter path does
    /// not exist inside the image.
    WithoutFixBinary { name: String, interpreter: String },
}

/// The entry the kernel will use for `machine`'s executables. When several
/// enabled entries match, the kernel takes the newest, which this
/// directory cannot tell, so every one of them must have the F flag.
pub fn choose_entry<'a>(
    entries: &'a [BinfmtEntry],
    machine: &ElfMachine,
) -> Result<&'a BinfmtEntry, NoEntry> {
    let header = machine.header();
    let matching: Vec<&BinfmtEntry> = entries.iter().filter(|e| e.matches(&header)).collect();
    let enabled: Vec<&BinfmtEntry> = matching.iter().copied().filter(|e| e.enabled).collect();
    if let Some(without) = enabled.iter().find(|e| !e.fix_binary()) {
        return Err(NoEntry::WithoutFixBinary {
            name: without.name.clone(),
            interpreter: without.interpreter.clone(),
        });
    }
    match (enabled.first(), matching.is_empty()) {
        (Some(entry), _) => Ok(entry),
        (None, true) => Err(NoEntry::Missing),
        (None, false) => Err(NoEntry::Disabled(
            matching.iter().map(|e| e.name.clone()).collect(),
        )),
    }
}

/// A registered interpreter RUN executes under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interpreter {
    /// The binfmt_misc entry's name (`qemu-aarch64`).
    pub entry: String,
    /// The path it was registered with.
    pub path: String,
}

/// What [`find_interpreter`] could not find, with what to do about it.
/// `platform` is the platform's text (`linux/arm64/v8`).
#[derive(Debug, thiserror::Error)]
pub enum EmulationError {
    #[error(
        "kiln does not know the executable format of {platform}, so it cannot check for a \
         qemu-user interpreter; build it on native nodes with --driver=k8s"
    )]
    UnknownArchitecture { platform: String },
    #[error(
        "binfmt_misc is not mounted at {dir}, so no qemu-user interpreter can run {platform} code: \
         install qemu-user-static, mount binfmt_misc (`mount -t binfmt_misc binfmt_misc {dir}`) \
         and register qemu-{qemu_target} with the F flag (scripts/binfmt.sh does both), \
         or build on native nodes with --driver=k8s"
    )]
    NotMounted {
        platform: String,
        dir: PathBuf,
        qemu_target: &'static str,
    },
    #[error(
        "binfmt_misc is disabled ({dir}/status), so no qemu-user interpreter can run {platform} \
         code: enable it (`echo 1 > {dir}/status`), or build on native nodes with --driver=k8s"
    )]
    BinfmtDisabled { platform: String, dir: PathBuf },
    #[error(
        "no qemu-user interpreter for {platform} is registered in binfmt_misc ({dir} has no entry \
         for ELF machine {machine}): install qemu-user-static and register qemu-{qemu_target} \
         with the F flag (Debian: write the line of /usr/lib/binfmt.d/qemu-{qemu_target}.conf to \
         {dir}/register; scripts/binfmt.sh does it), or build on native nodes with --driver=k8s"
    )]
    NoInterpreter {
        platform: String,
        dir: PathBuf,
        machine: u16,
        qemu_target: &'static str,
    },
    #[error(
        "the binfmt_misc entries for {platform} ({}) are disabled: enable one \
         (`echo 1 > {dir}/NAME`), or build on native nodes with --driver=k8s",
        names.join(", ")
    )]
    EntryDisabled {
        platform: String,
        dir: PathBuf,
        names: Vec<String>,
    },
    #[error(
        "binfmt_misc entry {dir}/{name} runs {platform} code with {interpreter}, but without the \
         F (fix-binary) flag, so the interpreter is not found inside RUN's chroot: re-register it \
         with F (`echo -1 > {dir}/{name}`, then scripts/binfmt.sh), or build on native nodes \
         with --driver=k8s"
    )]
    NoFixBinary {
        platform: String,
        dir: PathBuf,
        name: String,
        interpreter: String,
    },
    #[error("reading binfmt_misc entry {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The interpreter the kernel will run `platform`'s executables with,
/// from the binfmt_misc entries in `dir` (normally [`BINFMT_MISC_DIR`]).
pub fn find_interpreter(dir: &Path, platform: &Platform) -> Result<Interpreter, EmulationError> {
    let machine = elf_machine(platform).ok_or_else(|| EmulationError::UnknownArchitecture {
        platform: platform.to_string(),
    })?;
    let read = |path: PathBuf| {
        fs::read_to_string(&path).map_err(|source| EmulationError::Read { path, source })
    };
    let status_path = dir.join("status");
    let status = match fs::read_to_string(&status_path) {
        Ok(status) => status,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(EmulationError::NotMounted {
                platform: platform.to_string(),
                dir: dir.to_path_buf(),
                qemu_target: machine.qemu_target,
            });
        }
        Err(source) => {
            return Err(EmulationError::Read {
                path: status_path,
                source,
            });
        }
    };
    if status.trim() != "enabled" {
        return Err(EmulationError::BinfmtDisabled {
            platform: platform.to_string(),
            dir: dir.to_path_buf(),
        });
    }
    let listing = fs::read_dir(dir).map_err(|source| EmulationError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut entries = Vec::new();
    for item in listing {
        let item = item.map_err(|source| EmulationError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let name = item.file_name().to_string_lossy().into_owned();
        if name == "register" || name == "status" {
            continue;
        }
        if let Some(entry) = parse_entry(&name, &read(item.path())?) {
            entries.push(entry);
        }
    }
    // Directory order is arbitrary; the name order makes the choice, and
    // so the messages, the same on every run.
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    match choose_entry(&entries, &machine) {
        Ok(entry) => Ok(Interpreter {
            entry: entry.name.clone(),
            path: entry.interpreter.clone(),
        }),
        Err(NoEntry::Missing) => Err(EmulationError::NoInterpreter {
            platform: platform.to_string(),
            dir: dir.to_path_buf(),
            machine: machine.machine,
            qemu_target: machine.qemu_target,
        }),
        Err(NoEntry::Disabled(names)) => Err(EmulationError::EntryDisabled {
            platform: platform.to_string(),
            dir: dir.to_path_buf(),
            names,
        }),
        Err(NoEntry::WithoutFixBinary { name, interpreter }) => Err(EmulationError::NoFixBinary {
            platform: platform.to_string(),
            dir: dir.to_path_buf(),
            name,
            interpreter,
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn platform(text: &str) -> Platform {
        text.parse().unwrap()
    }

    /// Entries as this machine's kernel printed them for Debian
    /// qemu-user-static 7.2's registration lines.
    const AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n\
        flags: POF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\n\
        mask ffffffffffffff00fffffffffffffffffeffffff\n";
    const S390X: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/s390x-binfmt-P\n\
        flags: POF\noffset 0\nmagic 7f454c4602020100000000000000000000020016\n\
        mask fffffffffffffffcfffffffffffffffffffeffff\n";
    const ARM: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/arm-binfmt-P\n\
        flags: POF\noffset 0\nmagic 7f454c4601010100000000000000000002002800\n\
        mask ffffffffffffff00fffffffffffffffffeffffff\n";
    const PPC64LE: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/ppc64le-binfmt-P\n\
        flags: POF\noffset 0\nmagic 7f454c4602010100000000000000000002001500\n\
        mask fffffffffffffffcfffffffffffffffffeffff00\n";

    fn entry(name: &str, text: &str) -> BinfmtEntry {
        parse_entry(name, text).unwrap()
    }

    #[test]
    fn elf_headers_per_platform() {
        let table: &[(&str, Option<&str>)] = &[
            (
                "linux/amd64",
                Some("7f454c46020101000000000000000000 02003e00"),
            ),
            (
                "linux/386",
                Some("7f454c46010101000000000000000000 02000300"),
            ),
            (
                "linux/arm64",
                Some("7f454c46020101000000000000000000 0200b700"),
            ),
            (
                "linux/arm/v7",
                Some("7f454c46010101000000000000000000 02002800"),
            ),
            (
                "linux/arm/v6",
                Some("7f454c46010101000000000000000000 02002800"),
            ),
            (
                "linux/s390x",
                Some("7f454c46020201000000000000000000 00020016"),
            ),
            (
                "linux/ppc64le",
                Some("7f454c46020101000000000000000000 02001500"),
            ),
            (
                "linux/ppc64",
                Some("7f454c46020201000000000000000000 00020015"),
            ),
            (
                "linux/riscv64",
                Some("7f454c46020101000000000000000000 0200f300"),
            ),
            (
                "linux/mips64le",
                Some("7f454c46020101000000000000000000 02000800"),
            ),
            (
                "linux/loong64",
                Some("7f454c46020101000000000000000000 02000201"),
            ),
            ("linux/wasm", None),
            ("windows/amd64", None),
        ];
        for (text, want) in table {
            let got = elf_machine(&platform(text)).map(|m| hex::encode(m.header()));
            assert_eq!(got, want.map(|w| w.replace(' ', "")), "{text}");
        }
    }

    #[test]
    fn qemu_targets_are_debians_names() {
        let table = [
            ("linux/arm64", "aarch64"),
            ("linux/arm/v7", "arm"),
            ("linux/s390x", "s390x"),
            ("linux/ppc64le", "ppc64le"),
            ("linux/riscv64", "riscv64"),
            ("linux/mips64le", "mips64el"),
            ("linux/loong64", "loongarch64"),
        ];
        for (text, want) in table {
            assert_eq!(
                elf_machine(&platform(text)).map(|m| m.qemu_target),
                Some(want),
                "{text}"
            );
        }
    }

    #[test]
    fn parses_the_kernels_entry_text() {
        assert_eq!(
            parse_entry("qemu-aarch64", AARCH64),
            Some(BinfmtEntry {
                name: "qemu-aarch64".into(),
                enabled: true,
                interpreter: "/usr/libexec/qemu-binfmt/aarch64-binfmt-P".into(),
                flags: "POF".into(),
                recognition: Recognition::Magic {
                    offset: 0,
                    magic: hex::decode("7f454c460201010000000000000000000200b700").unwrap(),
                    mask: Some(hex::decode("ffffffffffffff00fffffffffffffffffeffffff").unwrap()),
                },
            })
        );
        assert_eq!(
            parse_entry(
                "python3.11",
                "disabled\ninterpreter /usr/bin/python3.11\nflags: \nextension .pyc\n"
            ),
            Some(BinfmtEntry {
                name: "python3.11".into(),
                enabled: false,
                interpreter: "/usr/bin/python3.11".into(),
                flags: String::new(),
                recognition: Recognition::Extension(".pyc".into()),
            })
        );
        // Not entries: kiln skips them.
        for text in [
            "",
            "enabled\n",
            "enabled\ninterpreter /x\nmagic zz\n",
            "interpreter /x\nmagic 7f\n",
        ] {
            assert_eq!(parse_entry("x", text), None, "{text:?}");
        }
    }

    #[test]
    fn entries_match_their_own_architecture_only() {
        let entries = [
            entry("qemu-aarch64", AARCH64),
            entry("qemu-arm", ARM),
            entry("qemu-s390x", S390X),
            entry("qemu-ppc64le", PPC64LE),
        ];
        let table = [
            ("linux/amd64", None),
            ("linux/386", None),
            ("linux/arm64", Some("qemu-aarch64")),
            ("linux/arm/v7", Some("qemu-arm")),
            ("linux/s390x", Some("qemu-s390x")),
            ("linux/ppc64le", Some("qemu-ppc64le")),
            ("linux/ppc64", None),
            ("linux/riscv64", None),
        ];
        for (text, want) in table {
            let header = elf_machine(&platform(text)).unwrap().header();
            let got: Vec<&str> = entries
                .iter()
                .filter(|e| e.matches(&header))
                .map(|e| e.name.as_str())
                .collect();
            assert_eq!(got, want.into_iter().collect::<Vec<_>>(), "{text}");
        }
        // The mask lets a position-independent executable (ET_DYN) through.
        let mut pie = elf_machine(&platform("linux/arm64")).unwrap().header();
        pie[16] = 3;
        assert!(entries[0].matches(&pie));
        // A magic past the end of the header never matches.
        let short = BinfmtEntry {
            recognition: Recognition::Magic {
                offset: 18,
                magic: vec![0xb7, 0, 0],
                mask: None,
            },
            ..entries[0].clone()
        };
        assert!(!short.matches(&pie));
    }

    #[test]
    fn choosing_an_entry() {
        let arm64 = elf_machine(&platform("linux/arm64")).unwrap();
        let with_f = entry("qemu-aarch64", AARCH64);
        let disabled = BinfmtEntry {
            enabled: false,
            ..with_f.clone()
        };
        let without_f = BinfmtEntry {
            name: "aarch64-binfmt-support".into(),
            flags: "PO".into(),
            interpreter: "/usr/bin/qemu-aarch64".into(),
            ..with_f.clone()
        };
        let other = entry("qemu-s390x", S390X);
        let table: Vec<(Vec<BinfmtEntry>, Result<&str, NoEntry>)> = vec![
            (vec![other.clone(), with_f.clone()], Ok("qemu-aarch64")),
            (vec![], Err(NoEntry::Missing)),
            (vec![other.clone()], Err(NoEntry::Missing)),
            (
                vec![disabled.clone(), other.clone()],
                Err(NoEntry::Disabled(vec!["qemu-aarch64".into()])),
            ),
            (
                vec![without_f.clone()],
                Err(NoEntry::WithoutFixBinary {
                    name: "aarch64-binfmt-support".into(),
                    interpreter: "/usr/bin/qemu-aarch64".into(),
                }),
            ),
            // Both enabled: the kernel may pick either, so F is required
            // of both.
            (
                vec![with_f.clone(), without_f.clone()],
                Err(NoEntry::WithoutFixBinary {
                    name: "aarch64-binfmt-support".into(),
                    interpreter: "/usr/bin/qemu-aarch64".into(),
                }),
            ),
            (vec![disabled, with_f.clone()], Ok("qemu-aarch64")),
        ];
        for (entries, want) in table {
            let got = choose_entry(&entries, &arm64).map(|e| e.name.as_str());
            assert_eq!(got, want, "{entries:?}");
        }
    }

    #[test]
    fn find_interpreter_reads_a_binfmt_misc_directory() {
        let dir = tempfile::tempdir().unwrap();
        let arm64 = platform("linux/arm64");
        let err = find_interpreter(dir.path(), &arm64).unwrap_err();
        assert!(matches!(err, EmulationError::NotMounted { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!(
                "binfmt_misc is not mounted at {d}, so no qemu-user interpreter can run \
                 linux/arm64 code: install qemu-user-static, mount binfmt_misc (`mount -t \
                 binfmt_misc binfmt_misc {d}`) and register qemu-aarch64 with the F flag \
                 (scripts/binfmt.sh does both), or build on native nodes with --driver=k8s",
                d = dir.path().display()
            )
        );

        fs::write(dir.path().join("status"), "disabled\n").unwrap();
        let err = find_interpreter(dir.path(), &arm64).unwrap_err();
        assert!(
            matches!(err, EmulationError::BinfmtDisabled { .. }),
            "{err}"
        );

        fs::write(dir.path().join("status"), "enabled\n").unwrap();
        fs::write(dir.path().join("register"), "").unwrap();
        fs::write(dir.path().join("qemu-s390x"), S390X).unwrap();
        let err = find_interpreter(dir.path(), &arm64).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "no qemu-user interpreter for linux/arm64 is registered in binfmt_misc ({d} \
                 has no entry for ELF machine 183): install qemu-user-static and register \
                 qemu-aarch64 with the F flag (Debian: write the line of \
                 /usr/lib/binfmt.d/qemu-aarch64.conf to {d}/register; scripts/binfmt.sh does \
                 it), or build on native nodes with --driver=k8s",
                d = dir.path().display()
            )
        );

        fs::write(
            dir.path().join("qemu-aarch64"),
            AARCH64.replace("flags: POF", "flags: PO"),
        )
        .unwrap();
        let err = find_interpreter(dir.path(), &arm64).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "binfmt_misc entry {}/qemu-aarch64 runs linux/arm64 code with \
                 /usr/libexec/qemu-binfmt/aarch64-binfmt-P, but without the F (fix-binary) flag",
                dir.path().display()
            )),
            "{err}"
        );

        fs::write(dir.path().join("qemu-aarch64"), AARCH64).unwrap();
        assert_eq!(
            find_interpreter(dir.path(), &arm64).unwrap(),
            Interpreter {
                entry: "qemu-aarch64".into(),
                path: "/usr/libexec/qemu-binfmt/aarch64-binfmt-P".into(),
            }
        );
        let err = find_interpreter(dir.path(), &platform("linux/wasm")).unwrap_err();
        assert!(
            matches!(err, EmulationError::UnknownArchitecture { .. }),
            "{err}"
        );
    }
}
