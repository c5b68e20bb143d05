//! The layer cache inside a stage: an instruction's key, what a hit puts
//! into the image instead of running the instruction, and what a miss
//! hands to the cache afterwards.

use std::fs::File;
use std::path::Path;

use super::BuildError;
use super::seam::StepCache;
use super::stage::BuildScope;
use super::state::{BlobSource, LayerRecord, StageImage};
use crate::cache::{CachedStep, InstructionForm, KeyInputs, StepToStore, cache_key};
use crate::context::{self, EntryKind, IgnoreRules};
use crate::dockerfile::{Instruction, StageVars};
use crate::image::HashingWriter;
use crate::platform::Platform;
use crate::registry::Access;

/// The key of `instruction` applied on top of `image`: its parent is the
/// key before it. The instruction enters as its [`InstructionForm`] (the
/// text as written and every parsed field, here-document bodies and
/// `--mount`s included, and the layer compression); the variables it
/// expands are inputs through `vars`.
pub fn step_key(
    scope: &BuildScope<'_>,
    platform: &Platform,
    image: &StageImage,
    instruction: &Instruction,
    vars: &StageVars,
    files: &[(String, String)],
) -> String {
    let form = InstructionForm::of(instruction, scope.layers.compression);
    let args = vars.run_args();
    cache_key(&KeyInputs {
        platform,
        parent: &image.cache_key,
        instruction: &form,
        args: &args,
        env: vars.env(),
        files,
    })
}

/// Puts a cached instruction's result into `image`: its layer (fetched
/// only when something reads the files) and its history entry.
pub async fn restore(
    scope: &BuildScope<'_>,
    image: &mut StageImage,
    step: CachedStep,
    keep_rootfs: bool,
) -> Result<(), BuildError> {
    let created = scope.created();
    let Some((descriptor, diff_id)) = step.layer else {
        image
            .config
            .add_history(created, &step.created_by, step.comment.as_deref(), None);
        return Ok(());
    };
    image.config.add_history(
        created,
        &step.created_by,
        step.comment.as_deref(),
        Some(&diff_id),
    );
    let record = LayerRecord {
        descriptor,
        source: BlobSource::Remote(step.source, Access::Push),
    };
    image.layers.push(record.clone());
    // The snapshot baseline no longer matches the files the image has.
    image.snapshotter = None;
    if let Some(root) = scope.blobs.current_root(image) {
        if keep_rootfs {
            let blob = scope.blobs.local_path(&record).await?;
            scope.blobs.apply(&blob, &root)?;
        } else {
            // Unpacked again, cached layers included, if anything needs it.
            image.rootfs = None;
        }
    }
    Ok(())
}

/// Hands a missed instruction's result to the cache: the layer it just
/// recorded as the last of `image` (when `wrote_layer`), or none.
pub fn remember(
    cache: &dyn StepCache,
    scope: &BuildScope<'_>,
    platform: &Platform,
    key: String,
    image: &StageImage,
    layer: Option<&crate::image::Layer>,
    created_by: &str,
) -> Result<(), BuildError> {
    let layer = match (layer, image.layers.last()) {
        (Some(layer), Some(record)) => Some((
            layer.path.clone(),
            record.descriptor.clone(),
            layer.diff_id.clone(),
        )),
        (None, _) => None,
        (Some(_), None) => {
            return Err(BuildError::Other(
                "a layer was written but not recorded in the image".to_string(),
            ));
        }
    };
    cache.store(StepToStore {
        key,
        platform: platform.clone(),
        layer,
        created_by: created_by.to_string(),
        now: scope.now,
    });
    Ok(())
}

/// What a COPY/ADD reads from `root`, for its key: every matched file,
/// directory and symlink by path, with its mode and, for files, the
/// digest of its content. Owners and modification times are left out as
/// kaniko does: context files become root's, and a checkout touches every
/// mtime without changing anything.
pub fn source_digests(
    root: &Path,
    rules: &IgnoreRules,
    patterns: &[String],
) -> Result<Vec<(String, String)>, BuildError> {
    let mut digests = Vec::new();
    for found in context::resolve_sources(root, patterns, rules)? {
        let named = found.rel_path.to_string_lossy().into_owned();
        // A source named through a symlink copies what it points to.
        let resolved = crate::fs::resolve_in_root(root, &named)?;
        let meta = std::fs::metadata(&resolved).map_err(BuildError::io("reading", &resolved))?;
        if !meta.is_dir() {
            digests.push((named, file_digest(&resolved, &meta)?));
            continue;
        }
        use std::os::unix::fs::PermissionsExt;
        digests.push((
            named,
            format!("dir {:o}", meta.permissions().mode() & 0o7777),
        ));
        let start = resolved
            .strip_prefix(root)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| found.rel_path.clone());
        for entry in context::walk(root, &start, rules) {
            let entry = entry?;
            let path = entry.rel_path.to_string_lossy().into_owned();
            let described = match entry.kind {
                EntryKind::Dir => format!("dir {:o}", entry.mode),
                EntryKind::Symlink => format!(
                    "symlink {}",
                    entry
                        .symlink_target
                        .as_deref()
                        .unwrap_or(Path::new(""))
                        .display()
                ),
                EntryKind::File => {
                    let file = root.join(&entry.rel_path);
                    let meta =
                        std::fs::metadata(&file).map_err(BuildError::io("reading", &file))?;
                    file_digest(&file, &meta)?
                }
                _ => continue,
            };
            digests.push((path, described));
        }
    }
    Ok(digests)
}

fn file_digest(path: &Path, meta: &std::fs::Metadata) -> Result<String, BuildError> {
    use std::os::unix::fs::PermissionsExt;
    let mut file = File::open(path).map_err(BuildError::io("reading", path))?;
    let mut hasher = HashingWriter::new(std::io::sink());
    std::io::copy(&mut file, &mut hasher).map_err(BuildError::io("reading", path))?;
    let (_, digest, _) = hasher.finish();
    Ok(format!(
        "file {:o} {digest}",
        meta.permissions().mode() & 0o7777
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn source_digests_follow_content_and_mode_not_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("src/sub")).unwrap();
        std::fs::write(root.join("src/a.txt"), "a").unwrap();
        std::fs::write(root.join("src/sub/b.txt"), "b").unwrap();
        std::os::unix::fs::symlink("a.txt", root.join("src/link")).unwrap();
        std::fs::write(root.join("top.txt"), "top").unwrap();
        let rules = IgnoreRules::empty();
        let patterns = vec!["src".to_string(), "top.txt".to_string()];
        let digests = |root: &Path| source_digests(root, &rules, &patterns).unwrap();

        let first = digests(root);
        let paths: Vec<&str> = first.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "src",
                "src/a.txt",
                "src/link",
                "src/sub",
                "src/sub/b.txt",
                "top.txt"
            ]
        );
        assert_eq!(first[2].1, "symlink a.txt");
        assert_eq!(
            first[5].1,
            format!("file 644 {}", crate::image::sha256_digest(b"top"))
        );

        // A new mtime alone changes nothing.
        let file = File::options()
            .write(true)
            .open(root.join("top.txt"))
            .unwrap();
        file.set_modified(std::time::SystemTime::UNIX_EPOCH)
            .unwrap();
        assert_eq!(digests(root), first);

        // Content and mode do.
        std::fs::write(root.join("src/sub/b.txt"), "B").unwrap();
        let changed = digests(root);
        assert_ne!(changed[4], first[4]);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.join("top.txt"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        assert_eq!(
            digests(root)[5].1,
            format!("file 600 {}", crate::image::sha256_digest(b"top"))
        );
    }
}
