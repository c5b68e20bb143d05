//! COPY and ADD as steps: where the sources are (the context, another
//! stage, an image), what the key reads from them, and the layer they
//! plan. Choosing and placing the files is [`super::copy`]'s.

use std::path::{Path, PathBuf};

use tracing::warn;

use super::BuildError;
use super::cache_step::source_digests;
use super::chmod::Chmod;
use super::copy::{CopyTarget, Ownership, SourceRoot, plan_copy};
use super::seam::LayerClass;
use super::sources::{AddSources, stage_add_sources};
use super::stage::{BuildScope, pull_base};
use super::state::StageImage;
use super::step::{CacheInputs, Executed, PlannedLayer, StageContext};
use crate::context::IgnoreRules;
use crate::dockerfile::{self, CopyInstruction, CopySource, FromRef, StageVars};

/// A COPY or ADD, its flags checked and its `--from` resolved.
pub struct CopyStep<'s> {
    copy: &'s CopyInstruction,
    /// `COPY` or `ADD`, for messages.
    name: &'static str,
    is_add: bool,
    /// The destination, expanded.
    dest: String,
    /// The working directory a relative destination is in.
    workdir: String,
    chmod: Option<Chmod>,
    /// Where the sources are when not in the context.
    from: Option<FromSource>,
}

/// What `--from` names.
enum FromSource {
    /// A stage built before (`name` as written, expanded).
    Stage { name: String, index: usize },
    /// An image, pulled (its files are unpacked only if the copy runs).
    Image(Box<StageImage>),
}

impl FromSource {
    /// The root filesystem the sources are in, unpacked, and the image it
    /// belongs to when nothing else holds it.
    async fn unpack(
        self,
        stage: &mut StageContext<'_, '_>,
    ) -> Result<(PathBuf, Option<Box<StageImage>>), BuildError> {
        let blobs = &stage.scope.blobs;
        match self {
            FromSource::Stage { name, index } => {
                let source = stage
                    .built
                    .get_mut(&index)
                    .ok_or_else(|| not_built(&name))?;
                Ok((blobs.rootfs(source).await?.to_path_buf(), None))
            }
            FromSource::Image(mut pulled) => {
                let root = blobs.rootfs(&mut pulled).await?.to_path_buf();
                Ok((root, Some(pulled)))
            }
        }
    }
}

/// What a COPY/ADD's planned layer reads its files from, kept until the
/// layer is written.
pub struct CopySources {
    /// Here-documents, downloads and unpacked archives.
    _staging: tempfile::TempDir,
    /// The `--from` image, whose root filesystem goes with it.
    _image: Option<Box<StageImage>>,
}

impl<'s> CopyStep<'s> {
    /// Expands and checks the flags; pulls a `--from` image.
    pub async fn prepare(
        stage: &StageContext<'_, '_>,
        copy: &'s CopyInstruction,
        is_add: bool,
        image: &StageImage,
        vars: &StageVars,
    ) -> Result<CopyStep<'s>, BuildError> {
        let name = if is_add { "ADD" } else { "COPY" };
        let dest = vars.expand(&copy.dest)?;
        let workdir = image.config.workdir();
        let chmod = copy
            .chmod
            .as_deref()
            .map(|c| {
                vars.expand(c)
                    .map_err(BuildError::from)
                    .and_then(|c| Chmod::parse(&c).map_err(BuildError::from))
            })
            .transpose()?;
        if !copy.exclude.is_empty() {
            return Err(BuildError::Other(format!(
                "{name} --exclude is not supported yet"
            )));
        }
        if copy.parents {
            return Err(BuildError::Other(format!(
                "{name} --parents is not supported yet"
            )));
        }
        let from = match &copy.from {
            None => None,
            Some(from) => {
                let from = vars.expand(from)?;
                let scope = stage.scope;
                Some(
                    match dockerfile::resolve_from(scope.dockerfile, stage.index, &from)? {
                        FromRef::Stage(index) => FromSource::Stage { name: from, index },
                        FromRef::Image(reference) => FromSource::Image(Box::new(
                            pull_base(scope, &reference, scope.target_platform).await?,
                        )),
                    },
                )
            }
        };
        Ok(CopyStep {
            copy,
            name,
            is_add,
            dest,
            workdir,
            chmod,
            from,
        })
    }

    /// The files it reads, known before the copy: files of the context by
    /// content, another stage by that stage's key, an image by its digest
    /// (here-documents are part of the instruction). URLs are only known
    /// by downloading them: then the key is taken from the layer written.
    pub fn cache_inputs(
        &self,
        stage: &StageContext<'_, '_>,
        vars: &StageVars,
    ) -> Result<CacheInputs, BuildError> {
        let files = match &self.from {
            None => {
                // A URL may come from an ARG (`ADD ${MIRROR}/tool.tgz`):
                // told after expansion, as the copy itself tells it.
                let patterns = self.context_patterns(vars)?;
                if patterns.iter().any(|p| super::sources::is_url(p)) {
                    return Ok(CacheInputs::WrittenLayer);
                }
                let scope = stage.scope;
                source_digests(scope.context.root, scope.context.ignore, &patterns)?
            }
            Some(FromSource::Stage { name, index }) => {
                let source = stage.built.get(index).ok_or_else(|| not_built(name))?;
                vec![("(stage)".to_string(), source.cache_key.clone())]
            }
            Some(FromSource::Image(pulled)) => {
                vec![("(image)".to_string(), pulled.cache_key.clone())]
            }
        };
        Ok(CacheInputs::Layer {
            class: LayerClass::Copy,
            files,
        })
    }

    /// Plans the layer: the sources staged and matched, placed at the
    /// destination in the stage's root filesystem.
    pub async fn execute(
        self,
        stage: &mut StageContext<'_, '_>,
        image: &mut StageImage,
        vars: &StageVars,
    ) -> Result<Executed, BuildError> {
        let scope = stage.scope;
        let CopyStep {
            copy,
            name,
            is_add,
            dest,
            workdir,
            chmod,
            from,
        } = self;
        let (from_root, from_image) = match from {
            None => (None, None),
            Some(from) => {
                let (root, image) = from.unpack(stage).await?;
                (Some(root), image)
            }
        };
        let staging = staging_dir(scope)?;
        let mut staged = StagedSources::new(copy, vars, staging.path())?;
        let empty_rules = IgnoreRules::empty();
        let (source_root, rules) = match &from_root {
            Some(root) => (root.as_path(), &empty_rules),
            None => (scope.context.root, scope.context.ignore),
        };
        let AddSources {
            plain,
            archives,
            downloads,
        } = if is_add {
            stage_add_sources(
                source_root,
                rules,
                std::mem::take(&mut staged.named),
                copy.checksum.as_deref(),
                staging.path(),
            )
            .await?
        } else {
            AddSources {
                plain: std::mem::take(&mut staged.named),
                archives: Vec::new(),
                downloads: Vec::new(),
            }
        };
        staged.in_staging.extend(downloads);

        let rootfs = scope.blobs.stage_root(image).await?;
        let chown = match &copy.chown {
            Some(spec) => Some(crate::fs::resolve_user(&rootfs, &vars.expand(spec)?)?),
            None => None,
        };
        let mut roots = Vec::new();
        if !plain.is_empty() {
            roots.push(SourceRoot {
                root: source_root,
                rules,
                patterns: plain,
                as_directory: false,
                // Files of another stage or image keep their owners.
                keep_owner: from_root.is_some(),
                here_documents: false,
            });
        }
        if !staged.in_staging.is_empty() {
            roots.push(SourceRoot {
                root: staging.path(),
                rules: &empty_rules,
                patterns: staged.in_staging,
                as_directory: false,
                keep_owner: false,
                here_documents: false,
            });
        }
        if !staged.heredocs.is_empty() {
            roots.push(SourceRoot {
                root: staging.path(),
                rules: &empty_rules,
                patterns: staged.heredocs,
                as_directory: false,
                keep_owner: false,
                here_documents: true,
            });
        }
        for archive in &archives {
            roots.push(SourceRoot {
                root: archive.as_path(),
                rules: &empty_rules,
                patterns: vec![".".to_string()],
                as_directory: true,
                keep_owner: true,
                here_documents: false,
            });
        }
        let target = CopyTarget {
            dest: &dest,
            workdir: &workdir,
            image_root: &rootfs,
        };
        let plan = plan_copy(
            name,
            &roots,
            &target,
            Ownership {
                chown,
                chmod: chmod.as_ref(),
            },
            scope.now,
        )?;
        if plan.is_empty() {
            warn!("{name} copied nothing; no layer written");
        }
        Ok(Executed::Plan(PlannedLayer {
            plan,
            rootfs,
            sources: Some(CopySources {
                _staging: staging,
                _image: from_image,
            }),
        }))
    }

    /// The sources named by path (patterns in the source root, or URLs),
    /// expanded.
    fn context_patterns(&self, vars: &StageVars) -> Result<Vec<String>, BuildError> {
        Ok(self
            .copy
            .sources
            .iter()
            .filter_map(|source| match source {
                CopySource::Path(pattern) => Some(vars.expand(pattern)),
                CopySource::Heredoc(_) => None,
            })
            .collect::<Result<Vec<_>, _>>()?)
    }
}

/// A COPY/ADD's sources sorted: patterns named in the source root, names
/// of files written into the staging directory (downloads), and the
/// here-documents written there.
struct StagedSources {
    named: Vec<String>,
    in_staging: Vec<String>,
    heredocs: Vec<String>,
}

impl StagedSources {
    /// Expands the patterns and writes each here-document into `staging`
    /// (mode 0644, expanded unless its delimiter was quoted).
    fn new(
        copy: &CopyInstruction,
        vars: &StageVars,
        staging: &Path,
    ) -> Result<StagedSources, BuildError> {
        let mut sources = StagedSources {
            named: Vec::new(),
            in_staging: Vec::new(),
            heredocs: Vec::new(),
        };
        for source in &copy.sources {
            match source {
                CopySource::Path(pattern) => sources.named.push(vars.expand(pattern)?),
                CopySource::Heredoc(doc) => {
                    let content = if doc.expand {
                        vars.expand_heredoc(&doc.content)?
                    } else {
                        doc.content.clone()
                    };
                    let path = staging.join(&doc.name);
                    std::fs::write(&path, content)
                        .map_err(BuildError::io("writing here-document", &path))?;
                    set_mode(&path, 0o644)?;
                    sources.heredocs.push(doc.name.clone());
                }
            }
        }
        Ok(sources)
    }
}

/// A directory of the build's work directory for a step's staged sources.
fn staging_dir(scope: &BuildScope<'_>) -> Result<tempfile::TempDir, BuildError> {
    tempfile::Builder::new()
        .prefix("sources-")
        .tempdir_in(scope.blobs.work_dir)
        .map_err(BuildError::io(
            "creating a staging directory in",
            scope.blobs.work_dir,
        ))
}

fn not_built(name: &str) -> BuildError {
    BuildError::Other(format!("stage {name} was not built"))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), BuildError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(BuildError::io("setting mode of", path))
}
