//! `RUN --mount` inside a build: the mount specs expanded and parsed, what
//! they add to the step's cache key, and each resolved to a host source
//! ([`crate::run::RunMount`]) that an isolation mode mounts or copies.
//!
//! - `bind`: the build context (with `.dockerignore` applied), another
//!   stage's root filesystem, or an image's. Read-only binds use the
//!   source in place; `rw` binds (and context binds that `.dockerignore`
//!   filters) get a private copy, thrown away after the RUN.
//! - `cache`: a directory under `--cache-dir`, at
//!   `run-mounts/<os>-<arch>[-<variant>]/<id, %-escaped>`, so a build for
//!   one platform never sees another's; created on first use (mode, uid,
//!   gid; seeded from `from`/`source`). `sharing=locked` waits for other
//!   users, `private` takes another instance (`<id>~1`, …) when the cache
//!   is in use, `shared` (default) only waits for those two.
//! - `secret`: the value of the `--secret` with that id, written to a
//!   private file outside the root filesystem (mode, uid, gid) and bound
//!   read-only, and/or exposed as an environment variable. Only ids reach
//!   the cache key and the log.
//! - `tmpfs`: an empty tmpfs.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tracing::info;

use super::BuildError;
use super::cache_step::source_digests;
use super::stage::{BuildScope, pull_base};
use super::state::StageImage;
use super::step::StageContext;
use crate::context::{self, EntryKind, IgnoreRules};
use crate::dockerfile::{
    self, Dockerfile, FromRef, InstructionKind, Plan, RunInstruction, StageVars,
};
use crate::fs::root_dir::RootDir;
use crate::platform::Platform;
use crate::run::mount_spec::{MountSpec, Sharing, absolute_target, parse_mount};
use crate::run::secret::{SecretSource, SecretValue};
use crate::run::{MountSource, RunMount};

/// The folder of `--cache-dir` that holds cache mounts.
pub const CACHE_MOUNTS_DIR: &str = "run-mounts";

/// One `--mount` of a RUN: as written, and parsed with the stage's
/// variables expanded.
#[derive(Clone, Debug)]
pub struct ParsedMount {
    pub raw: String,
    pub spec: MountSpec,
}

/// Expands and parses every `--mount` of `run`.
pub fn parse_run_mounts(
    run: &RunInstruction,
    vars: &StageVars,
) -> Result<Vec<ParsedMount>, BuildError> {
    run.mounts
        .iter()
        .map(|raw| {
            let spec = parse_mount(raw, &mut |value: &str| {
                vars.expand(value).map_err(|e| e.to_string())
            })?;
            Ok(ParsedMount {
                raw: raw.clone(),
                spec,
            })
        })
        .collect()
}

/// The error of a required secret nobody supplied.
fn not_supplied(raw: &str, id: &str) -> BuildError {
    BuildError::Other(format!(
        "RUN --mount={raw}: secret \"{id}\" was not supplied; pass --secret id={id},src=<file>"
    ))
}

/// The supplied secret `id` (the last `--secret` naming it).
fn find_secret<'s>(secrets: &'s [SecretSource], id: &str) -> Option<&'s SecretSource> {
    secrets.iter().rev().find(|s| s.id == id)
}

/// Fails when a RUN of a planned stage requires a secret that was not
/// supplied, before any stage runs. Mounts whose values need variables
/// known only while building (the base image's ENV) are checked again
/// when their RUN comes.
pub fn check_required_secrets(
    dockerfile: &Dockerfile,
    plan: &Plan,
    vars: &dockerfile::BuildVars,
    secrets: &[SecretSource],
) -> Result<(), BuildError> {
    for planned in &plan.stages {
        let Some(stage) = dockerfile.stages.get(planned.index) else {
            continue;
        };
        let mut scope = vars.planning_stage();
        for instruction in &stage.instructions {
            match &instruction.kind {
                InstructionKind::Arg(decls) => {
                    // A failure here is reported when the stage runs.
                    let _ = scope.declare_args(decls);
                }
                InstructionKind::Env(pairs) => {
                    let _ = scope.apply_env(pairs);
                }
                InstructionKind::Run(run) => {
                    let Ok(mounts) = parse_run_mounts(run, &scope) else {
                        continue;
                    };
                    for mount in mounts {
                        if let MountSpec::Secret(secret) = &mount.spec
                            && secret.required
                            && find_secret(secrets, &secret.id).is_none()
                        {
                            return Err(BuildError::Instruction {
                                line: instruction.line,
                                instruction: instruction.text.clone(),
                                source: Box::new(not_supplied(&mount.raw, &secret.id)),
                            });
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// What the mounts add to the step's cache key: each expanded spec, and
/// for binds what is bound (context files by content, a stage by its key,
/// an image by its digest). Never a secret's value, nor a cache's content.
pub async fn key_files(
    stage: &StageContext<'_, '_>,
    mounts: &[ParsedMount],
    workdir: &str,
) -> Result<Vec<(String, String)>, BuildError> {
    let scope = stage.scope;
    let mut files = Vec::new();
    for (n, mount) in mounts.iter().enumerate() {
        let mut spec = mount.spec.clone();
        set_absolute_target(&mut spec, workdir);
        files.push((format!("(mount {n})"), spec.to_string()));
        let MountSpec::Bind(bind) = &spec else {
            continue;
        };
        match resolve_from(stage, bind.from.as_deref())? {
            None => {
                // Said as a mount's error, not as COPY's.
                source_in(scope.context.root, &bind.source, &mount.raw, None)?;
                let pattern = context_pattern(&bind.source);
                for (path, digest) in
                    source_digests(scope.context.root, scope.context.ignore, &[pattern])?
                {
                    files.push((format!("(mount {n}) {path}"), digest));
                }
            }
            Some(FromRef::Stage(index)) => {
                let key = stage
                    .built
                    .get(&index)
                    .map(|image| image.cache_key.clone())
                    .ok_or_else(|| BuildError::Other(format!("stage {index} was not built")))?;
                files.push((format!("(mount {n}) (stage)"), key));
            }
            Some(FromRef::Image(reference)) => {
                let pulled = pull_base(scope, &reference, stage.platform).await?;
                files.push((format!("(mount {n}) (image)"), pulled.cache_key));
            }
        }
    }
    Ok(files)
}

/// The mounts resolved for one RUN, and what must live until it ends.
#[derive(Default)]
pub struct ResolvedMounts {
    pub mounts: Vec<RunMount>,
    /// `(variable, value)` of secrets given to `env`.
    pub secret_env: Vec<(String, SecretValue)>,
    /// Copies, secret files, images pulled for `from`: removed on drop.
    _keep: Vec<tempfile::TempDir>,
    _images: Vec<StageImage>,
    /// Cache locks, released on drop.
    _locks: Vec<fs::File>,
    /// Secret directories outside the work directory (on `/dev/shm`),
    /// removed on interruption too.
    _interruptible: Vec<crate::run::interrupt::Registered>,
}

/// Resolves `mounts` to host sources for a RUN whose WORKDIR is `workdir`.
pub async fn resolve(
    stage: &mut StageContext<'_, '_>,
    mounts: &[ParsedMount],
    workdir: &str,
) -> Result<ResolvedMounts, BuildError> {
    let scope = stage.scope;
    let mut resolved = ResolvedMounts::default();
    let mut targets: Vec<String> = Vec::new();
    for mount in mounts {
        let mut spec = mount.spec.clone();
        set_absolute_target(&mut spec, workdir);
        let target = spec.target();
        if let Some(target) = &target {
            if target == "/" {
                return Err(BuildError::Other(format!(
                    "RUN --mount={}: cannot mount over / (choose another target)",
                    mount.raw
                )));
            }
            if let Some(other) = targets.iter().find(|t| nests(t, target)) {
                return Err(BuildError::Other(format!(
                    "RUN --mount={}: its target {target} and the target {other} of another mount \
                     overlap; kiln mounts each in the image's own directories, so give them \
                     separate targets",
                    mount.raw
                )));
            }
            targets.push(target.clone());
        }
        match spec {
            MountSpec::Bind(bind) => {
                let target = target.unwrap_or_default();
                let (root, rules) = bind_root(stage, bind.from.as_deref(), &mut resolved).await?;
                let source = source_in(&root, &bind.source, &mount.raw, bind.from.as_deref())?;
                let is_dir = source.is_dir();
                // A private copy when the command may write, or when
                // .dockerignore hides part of what the context holds. A
                // read-only one links the files instead of copying them
                // where it can: the read-only mount keeps them unchanged.
                let filtered = !rules.is_empty();
                let source = if bind.read_write || filtered {
                    let copy = private_dir(scope, "bind-")?;
                    let dest = copy.path().join("source");
                    let files = if bind.read_write {
                        Files::Copy
                    } else {
                        Files::Link
                    };
                    copy_tree(&source, &dest, &root, &rules, files)?;
                    resolved._keep.push(copy);
                    dest
                } else {
                    source
                };
                resolved.mounts.push(RunMount {
                    target,
                    source: if is_dir {
                        MountSource::Directory(source)
                    } else {
                        MountSource::File(source)
                    },
                    read_only: !bind.read_write,
                });
            }
            MountSpec::Cache(cache) => {
                let (dir, lock) = cache_dir(stage, &cache, &mut resolved).await?;
                resolved._locks.push(lock);
                resolved.mounts.push(RunMount {
                    target: target.unwrap_or_default(),
                    source: MountSource::Directory(dir),
                    read_only: cache.read_only,
                });
            }
            MountSpec::Secret(secret) => {
                let Some(source) = find_secret(scope.run.secrets, &secret.id) else {
                    if secret.required {
                        return Err(not_supplied(&mount.raw, &secret.id));
                    }
                    info!(id = %secret.id, "optional secret not supplied; RUN runs without it");
                    continue;
                };
                let value = source.read(&|name| std::env::var(name).ok())?;
                if let Some(target) = target {
                    let dir = secret_dir(scope, &mut resolved)?;
                    let file = dir.path().join("secret");
                    write_secret(&file, &value, secret.mode, secret.uid, secret.gid)?;
                    resolved._keep.push(dir);
                    resolved.mounts.push(RunMount {
                        target,
                        source: MountSource::File(file),
                        read_only: true,
                    });
                }
                if let Some(env) = secret.env {
                    resolved.secret_env.push((env, value));
                }
            }
            MountSpec::Tmpfs(tmpfs) => resolved.mounts.push(RunMount {
                target: target.unwrap_or_default(),
                source: MountSource::Tmpfs { size: tmpfs.size },
                read_only: false,
            }),
        }
    }
    Ok(resolved)
}

fn set_absolute_target(spec: &mut MountSpec, workdir: &str) {
    match spec {
        MountSpec::Bind(b) => b.target = absolute_target(&b.target, workdir),
        MountSpec::Cache(c) => c.target = absolute_target(&c.target, workdir),
        MountSpec::Secret(s) => {
            if let Some(target) = &mut s.target {
                *target = absolute_target(target, workdir);
            }
        }
        MountSpec::Tmpfs(t) => t.target = absolute_target(&t.target, workdir),
    }
}

/// Whether one of two clean absolute paths is the other or below it.
fn nests(a: &str, b: &str) -> bool {
    let below = |outer: &str, inner: &str| {
        inner == outer || inner.starts_with(&format!("{}/", outer.trim_end_matches('/')))
    };
    below(a, b) || below(b, a)
}

/// A bind source as a context pattern: the root is `.`.
fn context_pattern(source: &str) -> String {
    let trimmed = source.trim_start_matches('/');
    if trimmed.is_empty() {
        ".".to_string()
    } else {
        trimmed.to_string()
    }
}

/// What `from` names, if anything (the context otherwise).
fn resolve_from(
    stage: &StageContext<'_, '_>,
    from: Option<&str>,
) -> Result<Option<FromRef>, BuildError> {
    from.map(|from| {
        dockerfile::resolve_from(stage.scope.dockerfile, stage.index, from)
            .map_err(|p| BuildError::Other(p.to_string()))
    })
    .transpose()
}

/// The root a bind or seed reads from, with the ignore rules that apply
/// to it (the context's `.dockerignore`; none for stages and images).
async fn bind_root(
    stage: &mut StageContext<'_, '_>,
    from: Option<&str>,
    resolved: &mut ResolvedMounts,
) -> Result<(PathBuf, IgnoreRules), BuildError> {
    let scope = stage.scope;
    match resolve_from(stage, from)? {
        None => Ok((
            scope.context.root.to_path_buf(),
            scope.context.ignore.clone(),
        )),
        Some(FromRef::Stage(index)) => {
            let image = stage
                .built
                .get_mut(&index)
                .ok_or_else(|| BuildError::Other(format!("stage {index} was not built")))?;
            let root = scope.blobs.rootfs(image).await?.to_path_buf();
            Ok((root, IgnoreRules::empty()))
        }
        Some(FromRef::Image(reference)) => {
            let mut image = pull_base(scope, &reference, stage.platform).await?;
            let root = scope.blobs.rootfs(&mut image).await?.to_path_buf();
            resolved._images.push(image);
            Ok((root, IgnoreRules::empty()))
        }
    }
}

/// The host path of `source` inside `root` (what `from` names, or the
/// build context), which must exist.
fn source_in(
    root: &Path,
    source: &str,
    raw: &str,
    from: Option<&str>,
) -> Result<PathBuf, BuildError> {
    let path = crate::fs::resolve_in_root(root, source)?;
    if fs::symlink_metadata(&path).is_err() {
        let place = match from {
            Some(from) => format!("what from={from} names"),
            None => "the build context".to_string(),
        };
        return Err(BuildError::Other(format!(
            "RUN --mount={raw}: source {source} does not exist in {place}; check source= and from="
        )));
    }
    Ok(path)
}

/// A private (0700) directory in the build's work directory.
fn private_dir(scope: &BuildScope<'_>, prefix: &str) -> Result<tempfile::TempDir, BuildError> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(scope.blobs.work_dir)
        .map_err(BuildError::io(
            "creating a directory in",
            scope.blobs.work_dir,
        ))?;
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700))
        .map_err(BuildError::io("setting mode of", dir.path()))?;
    Ok(dir)
}

/// Where secrets' files are written: memory, not disk.
const SECRET_PARENT: &str = "/dev/shm";

/// `statfs`'s `f_type` of a tmpfs (linux/magic.h).
const TMPFS_MAGIC: u64 = 0x0102_1994;

/// A private (0700) directory for one secret's file, in memory: below
/// `/dev/shm` when it is a writable tmpfs (registered for removal on
/// SIGTERM/SIGINT, as the work directory is), else in the build's work
/// directory (with a warning: the value then reaches the disk of
/// `$TMPDIR`). Either way it is removed when the RUN ends, on failure and
/// panic too (`TempDir`).
fn secret_dir(
    scope: &BuildScope<'_>,
    resolved: &mut ResolvedMounts,
) -> Result<tempfile::TempDir, BuildError> {
    let on_tmpfs = rustix::fs::statfs(SECRET_PARENT)
        .map(|stat| u64::try_from(stat.f_type).unwrap_or(0) == TMPFS_MAGIC)
        .unwrap_or(false);
    if on_tmpfs {
        match tempfile::Builder::new()
            .prefix("kiln-secret-")
            .tempdir_in(SECRET_PARENT)
        {
            Ok(dir) => {
                resolved
                    ._interruptible
                    .push(crate::run::interrupt::directory(dir.path()));
                fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700))
                    .map_err(BuildError::io("setting mode of", dir.path()))?;
                return Ok(dir);
            }
            Err(err) => {
                tracing::warn!(%err, "cannot create a secret directory in {SECRET_PARENT}; the secret's file is written to the work directory")
            }
        }
    } else {
        tracing::warn!(
            "{SECRET_PARENT} is not a tmpfs; the secret's file is written to the work directory (point TMPDIR at a tmpfs to keep it off disk)"
        );
    }
    private_dir(scope, "secret-")
}

fn write_secret(
    file: &Path,
    value: &SecretValue,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<(), BuildError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .map_err(BuildError::io("creating the secret file", file))?;
    out.write_all(value.bytes())
        .map_err(BuildError::io("writing the secret file", file))?;
    std::os::unix::fs::fchown(&out, Some(uid), Some(gid))
        .map_err(BuildError::io("setting the owner of the secret file", file))?;
    fs::set_permissions(file, fs::Permissions::from_mode(mode))
        .map_err(BuildError::io("setting mode of the secret file", file))
}

/// The directory of a cache mount for `platform`, created on first use,
/// with the lock that its `sharing` asks for held.
async fn cache_dir(
    stage: &mut StageContext<'_, '_>,
    cache: &crate::run::mount_spec::CacheMount,
    resolved: &mut ResolvedMounts,
) -> Result<(PathBuf, fs::File), BuildError> {
    let base = stage
        .scope
        .run
        .cache_dir
        .join(CACHE_MOUNTS_DIR)
        .join(platform_dir_name(stage.platform));
    fs::create_dir_all(&base).map_err(BuildError::io(
        "creating the cache mount directory (pass a writable --cache-dir)",
        &base,
    ))?;
    let name = cache_dir_name(&cache.id);
    let (dir, lock) = lock_instance(&base, &name, cache.sharing).await?;
    if !dir.exists() {
        let seed = match &cache.from {
            Some(from) => {
                let (root, _) = bind_root(stage, Some(from), resolved).await?;
                let source = cache.source.as_deref().unwrap_or("/");
                Some((
                    source_in(
                        &root,
                        source,
                        &format!("type=cache,id={}", cache.id),
                        Some(from),
                    )?,
                    root,
                ))
            }
            None => None,
        };
        create_cache_dir(&base, &dir, seed, cache.mode, cache.uid, cache.gid)?;
    } else {
        // The mount's owner and mode hold on every use, as in BuildKit, not
        // only for the RUN that created the cache.
        set_cache_owner_and_mode(&dir, cache.mode, cache.uid, cache.gid)?;
    }
    Ok((dir, lock))
}

/// Takes the lock of cache `name` (or, for `private`, of the first
/// instance nobody holds), blocking in a thread of its own.
async fn lock_instance(
    base: &Path,
    name: &str,
    sharing: Sharing,
) -> Result<(PathBuf, fs::File), BuildError> {
    let base = base.to_path_buf();
    let name = name.to_string();
    tokio::task::spawn_blocking(move || -> Result<(PathBuf, fs::File), BuildError> {
        use rustix::fs::{FlockOperation, flock};
        for instance in 0u32.. {
            let dir_name = match instance {
                0 => name.clone(),
                n => format!("{name}~{n}"),
            };
            let lock_path = base.join(format!("{dir_name}.lock"));
            let lock = fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(BuildError::io("opening the cache lock", &lock_path))?;
            let locked = match sharing {
                Sharing::Shared => flock(&lock, FlockOperation::LockShared),
                Sharing::Locked => flock(&lock, FlockOperation::LockExclusive),
                Sharing::Private => flock(&lock, FlockOperation::NonBlockingLockExclusive),
            };
            match locked {
                Ok(()) => return Ok((base.join(dir_name), lock)),
                Err(rustix::io::Errno::WOULDBLOCK) if sharing == Sharing::Private => continue,
                Err(err) => {
                    return Err(BuildError::Io {
                        what: "locking the cache mount",
                        path: lock_path,
                        source: err.into(),
                    });
                }
            }
        }
        Err(BuildError::Other("no free cache instance".to_string()))
    })
    .await
    .map_err(|source| BuildError::Task {
        what: "the cache lock task",
        source,
    })?
}

/// Makes a new cache directory, seeded from `seed` (a host path and the
/// root it belongs to), in one rename so a half-made one is never used.
fn create_cache_dir(
    base: &Path,
    dir: &Path,
    seed: Option<(PathBuf, PathBuf)>,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<(), BuildError> {
    let staging = tempfile::Builder::new()
        .prefix(".new-")
        .tempdir_in(base)
        .map_err(BuildError::io("creating a cache mount in", base))?;
    let new = staging.path().join("cache");
    match seed {
        Some((source, root)) if source.is_dir() => {
            copy_tree(&source, &new, &root, &IgnoreRules::empty(), Files::Copy)?
        }
        _ => fs::create_dir(&new).map_err(BuildError::io("creating", &new))?,
    }
    set_cache_owner_and_mode(&new, mode, uid, gid)?;
    fs::rename(&new, dir).map_err(BuildError::io("creating the cache mount", dir))
}

fn set_cache_owner_and_mode(dir: &Path, mode: u32, uid: u32, gid: u32) -> Result<(), BuildError> {
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))
        .map_err(BuildError::io("setting the owner of", dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .map_err(BuildError::io("setting mode of", dir))
}

/// `os-arch[-variant]`: one folder per platform.
pub fn platform_dir_name(platform: &Platform) -> String {
    platform.to_string().replace('/', "-")
}

/// A cache id as one folder name: letters, digits, `.`, `_` and `-` as
/// they are, every other byte as `%XX`, so two ids never share a folder
/// and an id can never climb out (`..` becomes `%2E%2E`).
pub fn cache_dir_name(id: &str) -> String {
    let mut name = String::with_capacity(id.len());
    for byte in id.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' => name.push(byte as char),
            b'.' if !id.bytes().all(|b| b == b'.') => name.push('.'),
            _ => name.push_str(&format!("%{byte:02X}")),
        }
    }
    name
}

/// How [`copy_tree`] reproduces regular files.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Files {
    Copy,
    /// Hard links where the filesystem allows (the same one), copies
    /// elsewhere. Only for trees nothing will write to.
    Link,
}

/// Copies the tree at `source` (inside `root`) to `dest`: directories,
/// files and symlinks with their modes and owners, leaving out what
/// `rules` exclude. Device nodes, fifos and sockets are not copied.
fn copy_tree(
    source: &Path,
    dest: &Path,
    root: &Path,
    rules: &IgnoreRules,
    files: Files,
) -> Result<(), BuildError> {
    // Every read inside the root goes through its descriptor: a directory
    // swapped for a link since the walk listed it is refused, not followed.
    let in_root = RootDir::open(root).map_err(BuildError::io("opening", root))?;
    let meta = fs::metadata(source).map_err(BuildError::io("reading", source))?;
    if !meta.is_dir() {
        return copy_entry(&in_root, source, dest, &meta);
    }
    fs::create_dir(dest).map_err(BuildError::io("creating", dest))?;
    let start = source
        .strip_prefix(root)
        .unwrap_or(Path::new(""))
        .to_path_buf();
    for entry in context::walk(root, &start, rules) {
        let entry = entry?;
        let from = root.join(&entry.rel_path);
        let to = dest.join(
            entry
                .rel_path
                .strip_prefix(&start)
                .unwrap_or(&entry.rel_path),
        );
        match entry.kind {
            EntryKind::Dir => {
                fs::create_dir(&to).map_err(BuildError::io("creating", &to))?;
                set_owner_and_mode(&to, entry.uid, entry.gid, entry.mode)?;
            }
            EntryKind::File => {
                // A link has the original's owner and mode already.
                if files == Files::Link && in_root.link_out(&from, &to).is_ok() {
                    continue;
                }
                let meta = fs::symlink_metadata(&from).map_err(BuildError::io("reading", &from))?;
                copy_entry(&in_root, &from, &to, &meta)?;
            }
            EntryKind::Symlink => {
                if let Some(target) = &entry.symlink_target {
                    std::os::unix::fs::symlink(target, &to)
                        .map_err(BuildError::io("creating link", &to))?;
                    let _ = std::os::unix::fs::lchown(&to, Some(entry.uid), Some(entry.gid));
                }
            }
            EntryKind::Other => {}
        }
    }
    use std::os::unix::fs::MetadataExt;
    set_owner_and_mode(dest, meta.uid(), meta.gid(), meta.mode() & 0o7777)
}

fn copy_entry(
    in_root: &RootDir,
    from: &Path,
    to: &Path,
    meta: &fs::Metadata,
) -> Result<(), BuildError> {
    use std::os::unix::fs::MetadataExt;
    // A FIFO or a device would be opened for reading: a FIFO blocks the
    // build forever, a device reads whatever it is.
    if !meta.is_file() {
        return Err(BuildError::io("copying", from)(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file or directory",
        )));
    }
    // Opened without following a link or blocking on a FIFO that may have
    // replaced the file since it was inspected.
    let mut source = in_root
        .open_regular(from)
        .map_err(BuildError::io("copying", from))?;
    let mut dest = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .map_err(BuildError::io("creating", to))?;
    std::io::copy(&mut source, &mut dest).map_err(BuildError::io("copying", from))?;
    set_owner_and_mode(to, meta.uid(), meta.gid(), meta.mode() & 0o7777)
}

fn set_owner_and_mode(path: &Path, uid: u32, gid: u32, mode: u32) -> Result<(), BuildError> {
    // Owners are kept where the process may set them (as root); a
    // non-root build keeps its own.
    let _ = std::os::unix::fs::chown(path, Some(uid), Some(gid));
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(BuildError::io("setting mode of", path))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn cache_folder_names_are_injective_and_stay_inside() {
        let table = [
            ("go", "go"),
            ("/root/.cache", "%2Froot%2F.cache"),
            ("a b", "a%20b"),
            ("..", "%2E%2E"),
            (".", "%2E"),
            ("x~1", "x%7E1"),
            ("npm.v1", "npm.v1"),
        ];
        for (id, want) in table {
            assert_eq!(cache_dir_name(id), want, "{id}");
        }
    }

    #[test]
    fn platform_folders() {
        let name = |p: &str| platform_dir_name(&p.parse().unwrap());
        assert_eq!(name("linux/amd64"), "linux-amd64");
        assert_eq!(name("linux/arm64"), "linux-arm64");
        assert_eq!(name("linux/arm/v7"), "linux-arm-v7");
    }

    #[test]
    fn nesting_targets() {
        assert!(nests("/a", "/a"));
        assert!(nests("/a", "/a/b"));
        assert!(nests("/a/b", "/a"));
        assert!(!nests("/a", "/ab"));
        assert!(!nests("/a/b", "/a/c"));
    }

    #[tokio::test]
    async fn cache_sharing_modes() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        // A private user finding the cache in use takes the next instance.
        let (first, first_lock) = lock_instance(base, "go", Sharing::Private).await.unwrap();
        let (second, _second_lock) = lock_instance(base, "go", Sharing::Private).await.unwrap();
        assert_eq!(first, base.join("go"));
        assert_eq!(second, base.join("go~1"));

        // A locked user waits until the holder is done.
        let waiting = tokio::spawn({
            let base = base.to_path_buf();
            async move { lock_instance(&base, "go", Sharing::Locked).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(
            !waiting.is_finished(),
            "a locked cache was taken while in use"
        );
        drop(first_lock);
        let (dir, locked) = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(dir, base.join("go"));

        // Shared users share, and make private ones go elsewhere.
        drop(locked);
        let (a, _a) = lock_instance(base, "npm", Sharing::Shared).await.unwrap();
        let (b, _b) = lock_instance(base, "npm", Sharing::Shared).await.unwrap();
        assert_eq!((a, b.clone()), (base.join("npm"), base.join("npm")));
        let (c, _c) = lock_instance(base, "npm", Sharing::Private).await.unwrap();
        assert_eq!(c, base.join("npm~1"));
    }

    #[test]
    fn copying_a_fifo_is_refused_without_opening_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(&root).unwrap();
        let fifo = root.join("pipe");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        // Opening the FIFO for reading would block this test forever.
        let err = copy_tree(
            &fifo,
            &dir.path().join("copy"),
            &root,
            &IgnoreRules::empty(),
            Files::Copy,
        )
        .unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn copying_never_reads_through_a_directory_swapped_for_a_link() {
        // Something swaps the source root's directories for links to a
        // directory outside, one after the other, while they are copied:
        // files listed before the swap then lead outside, where a file of
        // the same name waits. Whatever the race gives, no byte of it is
        // copied.
        let files = 200;
        let dirs = 8;
        let outside = tempfile::tempdir().unwrap();
        for n in 0..files {
            fs::write(outside.path().join(format!("f{n}")), "OUTSIDE").unwrap();
        }
        for round in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("root");
            for i in 0..dirs {
                fs::create_dir_all(root.join(format!("d{i}"))).unwrap();
                for n in 0..files {
                    fs::write(root.join(format!("d{i}/f{n}")), "inside").unwrap();
                }
            }
            let swapper = {
                let root = root.clone();
                let target = outside.path().to_path_buf();
                std::thread::spawn(move || {
                    for i in 0..dirs {
                        let d = root.join(format!("d{i}"));
                        if fs::rename(&d, root.join(format!("moved{i}"))).is_ok() {
                            let _ = std::os::unix::fs::symlink(&target, &d);
                        }
                        std::thread::sleep(std::time::Duration::from_micros(200));
                    }
                })
            };
            let copy = dir.path().join("copy");
            let _ = copy_tree(&root, &copy, &root, &IgnoreRules::empty(), Files::Copy);
            swapper.join().unwrap();
            for i in 0..dirs {
                // A directory swapped before the walk listed it is copied
                // as the link it had become: nothing was read through it.
                let copied_dir = copy.join(format!("d{i}"));
                if fs::symlink_metadata(&copied_dir).is_ok_and(|m| m.file_type().is_symlink()) {
                    continue;
                }
                for n in 0..files {
                    let copied = copied_dir.join(format!("f{n}"));
                    if let Ok(content) = fs::read_to_string(&copied) {
                        assert_eq!(content, "inside", "round {round}: {}", copied.display());
                    }
                }
            }
        }
    }

    #[test]
    fn context_patterns() {
        assert_eq!(context_pattern("/"), ".");
        assert_eq!(context_pattern("/src"), "src");
        assert_eq!(context_pattern("src/app"), "src/app");
    }
}
