//! Table-driven tests of the stage executor: whole Dockerfiles built from
//! `scratch` against an in-memory layer cache ([`FakeCache`]) and a runner
//! that records what RUN would run instead of running it ([`FakeRunner`]):
//! no root, no network, no registry. These are mocks of what cannot run
//! here (a registry, a chroot); `tests/build_cache.rs` covers the same
//! behaviour against a real registry and real commands.
//!
//! Each build of a test shares the cache and the blob store with the
//! builds before it, as two builds pushing to one cache repository do.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use super::seam::{BaseImages, CommandRunner, LayerClass, StepCache};
use super::stage::{BuildScope, ContextFiles, LayerFormat, RunSetup, SnapshotRules};
use super::state::{Blobs, RootFs, StageImage};
use super::{BuildError, build_planned};
use crate::cache::{
    BaseOf, CachedStep, InstructionForm, KeyInputs, StepToStore, base_key, cache_key,
};
use crate::context::IgnoreRules;
use crate::dockerfile::{self, BuildVars};
use crate::image::{
    BlobStore, Compression, EntryKind, EntryMeta, LayerPlan, Timestamps, sha256_digest,
};
use crate::platform::Platform;
use crate::registry::{PulledImage, Registry, RegistryOptions, parse_reference};
use crate::run::{RunError, RunOutput, RunSpec};
use crate::snapshot::SnapshotMode;

/// The build time of every test build.
const NOW: u64 = 1_700_000_000;

fn platform() -> Platform {
    "linux/amd64".parse().unwrap()
}

/// One lookup the executor made: which step, under which key, and whether
/// the cache had it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Looked {
    what: String,
    key: String,
    hit: bool,
}

/// The layer cache of a registry, in memory.
struct FakeCache {
    run_layers: bool,
    copy_layers: bool,
    entries: Mutex<BTreeMap<String, CachedStep>>,
    lookups: Mutex<Vec<Looked>>,
}

impl FakeCache {
    fn new(run_layers: bool, copy_layers: bool) -> FakeCache {
        FakeCache {
            run_layers,
            copy_layers,
            entries: Mutex::new(BTreeMap::new()),
            lookups: Mutex::new(Vec::new()),
        }
    }

    fn take_lookups(&self) -> Vec<Looked> {
        std::mem::take(&mut *self.lookups.lock().unwrap())
    }
}

impl StepCache for FakeCache {
    fn caches(&self, class: LayerClass) -> bool {
        match class {
            LayerClass::Run => self.run_layers,
            LayerClass::Copy => self.copy_layers,
        }
    }

    fn lookup<'a>(
        &'a self,
        key: &'a str,
        _platform: &'a Platform,
        what: &'a str,
    ) -> BoxFuture<'a, Option<CachedStep>> {
        let found = self.entries.lock().unwrap().get(key).cloned();
        self.lookups.lock().unwrap().push(Looked {
            what: what.to_string(),
            key: key.to_string(),
            hit: found.is_some(),
        });
        Box::pin(async move { found })
    }

    fn store(&self, step: StepToStore) {
        let cached = CachedStep {
            // Never fetched: the layer is in the tests' shared blob store.
            source: parse_reference("cache.invalid/fake@sha256:0000000000000000000000000000000000000000000000000000000000000000").unwrap(),
            layer: step
                .layer
                .map(|(_, descriptor, diff_id)| (descriptor, diff_id)),
            created_by: step.created_by,
            comment: None,
        };
        self.entries.lock().unwrap().insert(step.key, cached);
    }
}

/// A registry's base images, in memory (see [`Harness::push_base`]).
#[derive(Default)]
struct FakeBases {
    images: Mutex<BTreeMap<String, PulledImage>>,
}

impl FakeBases {
    fn digest_of(&self, reference: &str) -> String {
        self.images.lock().unwrap()[reference]
            .manifest_digest
            .clone()
    }
}

impl BaseImages for FakeBases {
    fn pull<'a>(
        &'a self,
        reference: &'a str,
        _platform: &'a Platform,
    ) -> BoxFuture<'a, Result<PulledImage, BuildError>> {
        let found = self.images.lock().unwrap().get(reference).cloned();
        Box::pin(async move { Ok(found.expect("no such base image")) })
    }
}

/// The PATH of the base images of [`Harness::push_base`].
const BASE_PATH: &str = "/usr/bin:/bin";

/// A command the runner was asked to run, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ran {
    /// The last word of its argv (the shell form's command).
    command: String,
    workdir: String,
    /// The files in the root filesystem when it ran, sorted.
    saw: Vec<String>,
    /// The root filesystem's directory.
    root: PathBuf,
}

/// Records each command and writes one file into the root filesystem, named
/// after the command and holding its working directory, so a RUN has a
/// layer whose content says where it ran. A command `exit-N` fails with
/// status N instead.
#[derive(Default)]
struct FakeRunner {
    ran: Mutex<Vec<Ran>>,
}

impl FakeRunner {
    fn take_ran(&self) -> Vec<Ran> {
        std::mem::take(&mut *self.ran.lock().unwrap())
    }
}

impl CommandRunner for FakeRunner {
    fn run(
        &self,
        root: &Path,
        spec: &RunSpec,
        _scratch: &Path,
        _log: &mut dyn FnMut(&[u8]),
    ) -> Result<RunOutput, RunError> {
        let command = spec.argv.last().cloned().unwrap_or_default();
        self.ran.lock().unwrap().push(Ran {
            command: command.clone(),
            workdir: spec.workdir.clone(),
            saw: files_in(root),
            root: root.to_path_buf(),
        });
        let status = match command.strip_prefix("exit-") {
            Some(code) => code.parse().unwrap(),
            None => {
                let name = command.replace(|c: char| !c.is_ascii_alphanumeric(), "_");
                std::fs::write(root.join(name), &spec.workdir).unwrap();
                0
            }
        };
        Ok(RunOutput {
            status,
            output_tail: String::new(),
            created_mount_points: Vec::new(),
        })
    }
}

/// The files below `root`, as paths relative to it, sorted.
fn files_in(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let relative = path.strip_prefix(root).unwrap();
                files.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    files.sort();
    files
}

/// What one build did.
struct Built {
    image: StageImage,
    lookups: Vec<Looked>,
    ran: Vec<Ran>,
}

impl Built {
    fn lookups(&self) -> Vec<(&str, bool)> {
        self.lookups
            .iter()
            .map(|l| (l.what.as_str(), l.hit))
            .collect()
    }

    fn ran(&self) -> Vec<(&str, &str)> {
        self.ran
            .iter()
            .map(|r| (r.command.as_str(), r.workdir.as_str()))
            .collect()
    }

    fn layer_digests(&self) -> Vec<String> {
        self.image
            .layers
            .iter()
            .map(|l| l.descriptor.digest.clone())
            .collect()
    }

    /// Each history entry's `created_by`, with `+layer` when it has one.
    fn history(&self) -> Vec<String> {
        self.image
            .config
            .history
            .iter()
            .map(|h| {
                let text = h.created_by.clone().unwrap_or_default();
                if h.empty_layer {
                    text
                } else {
                    format!("{text} +layer")
                }
            })
            .collect()
    }
}

/// The cache, the blob store and the build context the builds of one test
/// share.
struct Harness {
    dir: tempfile::TempDir,
    work: PathBuf,
    store: BlobStore,
    registry: Registry,
    cache: Option<FakeCache>,
    runner: Arc<FakeRunner>,
    bases: FakeBases,
    /// `--single-snapshot`.
    single_snapshot: bool,
}

impl Harness {
    /// With `--cache`, run and copy layers cached.
    fn new() -> Harness {
        Harness::with_cache(Some(FakeCache::new(true, true)))
    }

    fn with_cache(cache: Option<FakeCache>) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["work", "context"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let store = BlobStore::open(&dir.path().join("blobs")).unwrap();
        Harness {
            work: dir.path().join("work"),
            dir,
            store,
            registry: Registry::new(RegistryOptions::default()).unwrap(),
            cache,
            runner: Arc::default(),
            bases: FakeBases::default(),
            single_snapshot: false,
        }
    }

    /// Puts an image under `reference` "in the registry": one layer of
    /// `files` (mode 0644, root's), a config with `working_dir` and `PATH`.
    /// Its blobs go into the shared store, where the build finds them.
    fn push_base(&self, reference: &str, working_dir: Option<&str>, files: &[(&str, &str)]) {
        let mut config = serde_json::json!({ "Env": [format!("PATH={BASE_PATH}")] });
        if let Some(dir) = working_dir {
            config["WorkingDir"] = dir.into();
        }
        self.push_base_with_config(reference, config, files);
    }

    /// A base image whose config's `config` object is `config`.
    fn push_base_with_config(
        &self,
        reference: &str,
        config: serde_json::Value,
        files: &[(&str, &str)],
    ) {
        let sources = tempfile::tempdir_in(self.dir.path()).unwrap();
        let mut plan = LayerPlan::new();
        for (name, content) in files {
            let source = sources.path().join(name.replace('/', "_"));
            std::fs::write(&source, content).unwrap();
            plan.push(
                Path::new(name),
                EntryKind::File { source },
                EntryMeta::new(0o644, 0, 0, 0),
            )
            .unwrap();
        }
        let layer = plan
            .write_layer(
                &self.store.tmp_dir_created().unwrap(),
                Compression::Gzip,
                None,
                Timestamps::Zero,
            )
            .unwrap();
        let layer = self.store.put_layer(layer).unwrap();
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": config,
            "rootfs": { "type": "layers", "diff_ids": [layer.diff_id] },
        });
        let config_bytes = serde_json::to_vec(&config).unwrap();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256_digest(&config_bytes),
                "size": config_bytes.len(),
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer.digest,
                "size": layer.size,
            }],
        });
        let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
        let reference_parsed = parse_reference(reference).unwrap();
        let pulled = PulledImage {
            reference: reference_parsed.clone(),
            source: reference_parsed,
            manifest_digest: sha256_digest(&manifest_bytes),
            index_digest: None,
            manifest: serde_json::from_slice(&manifest_bytes).unwrap(),
            manifest_bytes,
            manifest_media_type: "application/vnd.oci.image.manifest.v1+json".to_string(),
            config: serde_json::from_slice(&config_bytes).unwrap(),
            config_bytes,
        };
        let mut images = self.bases.images.lock().unwrap();
        images.insert(reference.to_string(), pulled);
    }

    fn context(&self) -> PathBuf {
        self.dir.path().join("context")
    }

    fn write_context(&self, files: &[(&str, &str)]) {
        for (path, content) in files {
            let path = self.context().join(path);
            std::fs::write(&path, content).unwrap();
            // Whatever the umask: modes are part of keys and layers.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }

    fn scope<'a>(
        &'a self,
        dockerfile: &'a dockerfile::Dockerfile,
        vars: &'a BuildVars,
        platform: &'a Platform,
        ignore: &'a IgnoreRules,
        context: &'a Path,
        run_cache_dir: &'a Path,
    ) -> BuildScope<'a> {
        BuildScope {
            dockerfile,
            vars,
            target_platform: platform,
            now: NOW,
            bases: &self.bases,
            blobs: Blobs {
                registry: &self.registry,
                store: &self.store,
                work_dir: &self.work,
                cache_dir: None,
                inplace: None,
            },
            context: ContextFiles {
                root: context,
                ignore,
            },
            pushed_stages: Vec::new(),
            early_push: None,
            shared: None,
            layers: LayerFormat {
                compression: Compression::Gzip,
                level: None,
                // --reproducible: layers of planned files are the same
                // bytes on every machine.
                timestamps: Timestamps::Zero,
            },
            snapshots: SnapshotRules {
                mode: SnapshotMode::Full,
                one_per_stage: self.single_snapshot,
                never_captured: Vec::new(),
            },
            cache: self.cache.as_ref().map(|c| c as &dyn StepCache),
            run: RunSetup {
                runner: Arc::clone(&self.runner) as Arc<dyn CommandRunner>,
                secrets: &[],
                cache_dir: run_cache_dir,
            },
        }
    }

    /// Builds `text`'s last stage.
    async fn build(&self, text: &str) -> Built {
        self.try_build(text).await.unwrap()
    }

    /// [`Harness::build`], failing as the build does.
    async fn try_build(&self, text: &str) -> Result<Built, BuildError> {
        self.try_build_planned(text, false).await
    }

    /// [`Harness::try_build`] of only the stages the last one needs
    /// (`skip_unused`, kiln's default) or of every stage (kaniko's).
    async fn try_build_planned(&self, text: &str, skip_unused: bool) -> Result<Built, BuildError> {
        self.try_build_for(text, skip_unused, &platform(), None)
            .await
    }

    /// [`Harness::try_build_planned`] for `target` (the build platform
    /// stays linux/amd64), sharing stages with other builds through
    /// `shared`.
    async fn try_build_for(
        &self,
        text: &str,
        skip_unused: bool,
        target: &Platform,
        shared: Option<&super::shared::SharedStages>,
    ) -> Result<Built, BuildError> {
        let dockerfile = dockerfile::parse(text).unwrap();
        let platform = target.clone();
        let vars = BuildVars::new(
            BTreeMap::new(),
            &platform,
            &self::platform(),
            &dockerfile.global_args,
            dockerfile.escape,
        )
        .unwrap();
        let (ignore, context) = (IgnoreRules::empty(), self.context());
        let run_cache_dir = self.dir.path().join("run-cache");
        let scope = self.scope(
            &dockerfile,
            &vars,
            &platform,
            &ignore,
            &context,
            &run_cache_dir,
        );
        let plan = dockerfile::plan(&dockerfile, None, skip_unused, &vars).unwrap();
        let scope = BuildScope {
            pushed_stages: plan.image_stages(),
            shared,
            ..scope
        };
        let (image, _others) = build_planned(&scope, &plan).await?;
        Ok(Built {
            image,
            lookups: self
                .cache
                .as_ref()
                .map(FakeCache::take_lookups)
                .unwrap_or_default(),
            ran: self.runner.take_ran(),
        })
    }
}

/// The environment every scratch stage starts with.
const SCRATCH_ENV: &[(&str, &str)] = &[("PATH", crate::run::DEFAULT_PATH)];

/// The key of `instruction` (one Dockerfile line) after `parent`, seeing
/// `env`, reading `files`: computed here from the key's definition, not by
/// the executor.
fn key_after(
    parent: &str,
    instruction: &str,
    env: &[(&str, &str)],
    files: &[(&str, &str)],
) -> String {
    let parsed = dockerfile::parse(&format!("FROM scratch\n{instruction}\n")).unwrap();
    let form = InstructionForm::of(&parsed.stages[0].instructions[0], Compression::Gzip);
    let pairs = |items: &[(&str, &str)]| -> Vec<(String, String)> {
        items
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    cache_key(&KeyInputs {
        platform: &platform(),
        parent,
        instruction: &form,
        args: &[],
        env: &pairs(env),
        files: &pairs(files),
    })
}

/// The keys of `instructions` one after the other from `scratch`, every
/// one seeing only the scratch environment and reading no files.
fn chain(instructions: &[&str]) -> Vec<String> {
    let mut parent = base_key(BaseOf::Scratch);
    let mut keys = Vec::new();
    for instruction in instructions {
        parent = key_after(&parent, instruction, SCRATCH_ENV, &[]);
        keys.push(parent.clone());
    }
    keys
}

/// Lookups in order: (step, hit).
type StepLookups = &'static [(&'static str, bool)];

/// A build after another, sharing its cache: which steps were looked up
/// and hit, what ran and where.
struct Row {
    name: &'static str,
    /// Context files before the first build.
    context: &'static [(&'static str, &'static str)],
    first: &'static str,
    /// Context files changed before the second build.
    changed: &'static [(&'static str, &'static str)],
    second: &'static str,
    /// The second build's lookups.
    lookups: StepLookups,
    /// What the second build ran: (command, working directory).
    ran: &'static [(&'static str, &'static str)],
}

#[tokio::test]
async fn hits_and_misses_along_the_key_chain() {
    let table = [
        Row {
            name: "an identical rebuild hits every step and runs nothing",
            context: &[],
            first: "FROM scratch\nWORKDIR /a\nRUN one\nRUN two\n",
            changed: &[],
            second: "FROM scratch\nWORKDIR /a\nRUN one\nRUN two\n",
            lookups: &[("WORKDIR /a", true), ("RUN one", true), ("RUN two", true)],
            ran: &[],
        },
        Row {
            name: "a RUN in a different WORKDIR never hits the other's layer",
            context: &[],
            first: "FROM scratch\nWORKDIR /a\nRUN make\n",
            changed: &[],
            second: "FROM scratch\nWORKDIR /b\nRUN make\n",
            lookups: &[("WORKDIR /b", false), ("RUN make", false)],
            ran: &[("make", "/b")],
        },
        Row {
            name: "WORKDIR / after WORKDIR /a: the RUN after it misses and runs in /",
            context: &[],
            first: "FROM scratch\nWORKDIR /a\nRUN make\n",
            changed: &[],
            second: "FROM scratch\nWORKDIR /a\nWORKDIR /\nRUN make\n",
            lookups: &[("WORKDIR /a", true), ("RUN make", false)],
            ran: &[("make", "/")],
        },
        Row {
            name: "a changed early step invalidates every later key",
            context: &[],
            first: "FROM scratch\nRUN one\nRUN two\nRUN three\n",
            changed: &[],
            second: "FROM scratch\nRUN ONE\nRUN two\nRUN three\n",
            lookups: &[("RUN ONE", false), ("RUN two", false), ("RUN three", false)],
            ran: &[("ONE", "/"), ("two", "/"), ("three", "/")],
        },
        Row {
            name: "a changed middle step: the steps before it hit, the ones after miss",
            context: &[],
            first: "FROM scratch\nRUN one\nRUN two\nRUN three\n",
            changed: &[],
            second: "FROM scratch\nRUN one\nRUN TWO\nRUN three\n",
            lookups: &[("RUN one", true), ("RUN TWO", false), ("RUN three", false)],
            ran: &[("TWO", "/"), ("three", "/")],
        },
        Row {
            // USER is in no RUN's environment: only the chain carries it.
            name: "a changed config-only step invalidates the steps after it",
            context: &[],
            first: "FROM scratch\nRUN one\nUSER 1\nRUN two\n",
            changed: &[],
            second: "FROM scratch\nRUN one\nUSER 2\nRUN two\n",
            lookups: &[("RUN one", true), ("RUN two", false)],
            ran: &[("two", "/")],
        },
        Row {
            name: "a changed file in the context invalidates its COPY and what follows",
            context: &[("f", "1")],
            first: "FROM scratch\nRUN one\nCOPY f /f\nRUN two\n",
            changed: &[("f", "2")],
            second: "FROM scratch\nRUN one\nCOPY f /f\nRUN two\n",
            lookups: &[("RUN one", true), ("COPY f /f", false), ("RUN two", false)],
            ran: &[("two", "/")],
        },
        Row {
            name: "an unchanged context: COPY and what follows hit",
            context: &[("f", "1")],
            first: "FROM scratch\nCOPY f /f\nRUN two\n",
            changed: &[],
            second: "FROM scratch\nCOPY f /f\nRUN two\n",
            lookups: &[("COPY f /f", true), ("RUN two", true)],
            ran: &[],
        },
        Row {
            name: "a changed earlier stage invalidates a COPY --from it and what follows",
            context: &[],
            first: "FROM scratch AS a\nENV X=1\nRUN one\nFROM scratch\nCOPY --from=a /one /x\nRUN two\n",
            changed: &[],
            second: "FROM scratch AS a\nENV X=2\nRUN one\nFROM scratch\nCOPY --from=a /one /x\nRUN two\n",
            lookups: &[
                ("RUN one", false),
                ("COPY --from=a /one /x", false),
                ("RUN two", false),
            ],
            ran: &[("one", "/"), ("two", "/")],
        },
        Row {
            name: "an unchanged earlier stage: a COPY --from it hits",
            context: &[],
            first: "FROM scratch AS a\nRUN one\nFROM scratch\nCOPY --from=a /one /x\nRUN two\n",
            changed: &[],
            second: "FROM scratch AS a\nRUN one\nFROM scratch\nCOPY --from=a /one /x\nRUN two\n",
            lookups: &[
                ("RUN one", true),
                ("COPY --from=a /one /x", true),
                ("RUN two", true),
            ],
            ran: &[],
        },
        Row {
            // USER, unlike ENV, is not in the RUN's key but through the
            // chain: the stage's base key carries it.
            name: "a stage FROM a changed stage misses from its first step",
            context: &[],
            first: "FROM scratch AS a\nUSER 1\nRUN one\nFROM a\nRUN two\n",
            changed: &[],
            second: "FROM scratch AS a\nUSER 2\nRUN one\nFROM a\nRUN two\n",
            lookups: &[("RUN one", false), ("RUN two", false)],
            ran: &[("one", "/"), ("two", "/")],
        },
        Row {
            name: "a changed file a RUN binds from the context invalidates the RUN",
            context: &[("f", "1")],
            first: "FROM scratch\nRUN --mount=type=bind,source=f,target=/m build\n",
            changed: &[("f", "2")],
            second: "FROM scratch\nRUN --mount=type=bind,source=f,target=/m build\n",
            lookups: &[("RUN --mount=type=bind,source=f,target=/m build", false)],
            ran: &[("build", "/")],
        },
    ];
    // Every row is checked, and every failing one named.
    let mut failed = Vec::new();
    for row in &table {
        let harness = Harness::new();
        harness.write_context(row.context);
        harness.build(row.first).await;
        harness.write_context(row.changed);
        let second = harness.build(row.second).await;
        if second.lookups() != row.lookups || second.ran() != row.ran {
            failed.push(format!(
                "{}:\n  lookups {:?}\n     want {:?}\n  ran {:?}\n want {:?}",
                row.name,
                second.lookups(),
                row.lookups,
                second.ran(),
                row.ran
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// 67ae663: `WORKDIR /` creates nothing, but it is a link of the key
/// chain like any config-only step.
#[tokio::test]
async fn workdir_slash_is_a_link_of_the_key_chain() {
    let harness = Harness::new();
    let built = harness
        .build("FROM scratch\nWORKDIR /a\nWORKDIR /\nRUN make\n")
        .await;
    let keys = chain(&["WORKDIR /a", "WORKDIR /", "RUN make"]);
    // WORKDIR / is never looked up (it makes no layer), but the RUN's key
    // is chained on its key, not on WORKDIR /a's.
    let looked: Vec<(&str, &str)> = built
        .lookups
        .iter()
        .map(|l| (l.what.as_str(), l.key.as_str()))
        .collect();
    assert_eq!(
        looked,
        [
            ("WORKDIR /a", keys[0].as_str()),
            ("RUN make", keys[2].as_str())
        ]
    );
    assert_ne!(keys[2], chain(&["WORKDIR /a", "RUN make"])[1]);
    assert_eq!(built.image.cache_key, keys[2]);
    assert_eq!(built.ran(), [("make", "/")]);
}

/// Config-only steps are never looked up and write no layer, but each is
/// a link of the chain: the keys after them are chained on theirs, and
/// each key sees the environment before its step.
#[tokio::test]
async fn config_only_steps_extend_the_chain_without_a_layer() {
    let harness = Harness::new();
    let built = harness
        .build("FROM scratch\nENV A=1\nLABEL l=v\nRUN make\nUSER 7\n")
        .await;
    let scratch = base_key(BaseOf::Scratch);
    let env_a = [SCRATCH_ENV[0], ("A", "1")];
    let env = key_after(&scratch, "ENV A=1", SCRATCH_ENV, &[]);
    let label = key_after(&env, "LABEL l=v", &env_a, &[]);
    let run = key_after(&label, "RUN make", &env_a, &[]);
    let user = key_after(&run, "USER 7", &env_a, &[]);
    assert_eq!(
        built.lookups,
        [Looked {
            what: "RUN make".to_string(),
            key: run,
            hit: false
        }]
    );
    assert_eq!(built.image.cache_key, user);
    assert_eq!(
        built.history(),
        ["ENV A=1", "LABEL l=v", "RUN make +layer", "USER 7"]
    );
    assert_eq!(built.image.layers.len(), 1);
}

/// A hit puts the cached layer and its history entry into the image and
/// runs nothing: the image is the first build's.
#[tokio::test]
async fn a_hit_restores_the_layer_and_skips_execution() {
    let harness = Harness::new();
    harness.write_context(&[("f", "content")]);
    let text = "FROM scratch\nWORKDIR /app\nCOPY f .\nRUN make\nENV A=1\n";
    let first = harness.build(text).await;
    assert_eq!(first.ran(), [("make", "/app")]);
    assert_eq!(first.layer_digests().len(), 3);
    let second = harness.build(text).await;
    assert!(second.ran.is_empty(), "{:?}", second.ran);
    assert!(second.lookups.iter().all(|l| l.hit), "{:?}", second.lookups);
    assert_eq!(second.layer_digests(), first.layer_digests());
    assert_eq!(second.history(), first.history());
    assert_eq!(
        second.history(),
        [
            "WORKDIR /app +layer",
            "COPY f . +layer",
            "RUN make +layer",
            "ENV A=1"
        ]
    );
    assert_eq!(second.image.cache_key, first.image.cache_key);
}

/// bd37278: a base image without a WorkingDir, or with an empty one,
/// works in `/`: RUN runs there (and sees the base's files) and a relative
/// COPY destination is under it.
#[tokio::test]
async fn a_missing_or_empty_working_dir_is_slash() {
    for working_dir in [None, Some("")] {
        let harness = Harness::new();
        harness.write_context(&[("f", "content")]);
        harness.push_base("base.invalid/base:1", working_dir, &[("etc/base", "b")]);
        let built = harness
            .build("FROM base.invalid/base:1\nCOPY f copied\nRUN make\n")
            .await;
        assert_eq!(built.ran(), [("make", "/")], "{working_dir:?}");
        assert_eq!(built.ran[0].saw, ["copied", "etc/base"], "{working_dir:?}");
    }
}

/// A stage whose base sets no PATH gets the default one, as BuildKit gives
/// it; RUN sees it, and so does the image. A PATH of the base stays.
#[tokio::test]
async fn a_base_without_path_gets_the_default_path() {
    let default_path = format!("PATH={}", crate::run::DEFAULT_PATH);
    let table: [(&str, serde_json::Value, Vec<String>); 4] = [
        ("no Env", serde_json::json!({}), vec![default_path.clone()]),
        (
            "Env without PATH",
            serde_json::json!({ "Env": ["HOME=/h"] }),
            vec!["HOME=/h".to_string(), default_path.clone()],
        ),
        (
            "its own PATH",
            serde_json::json!({ "Env": ["PATH=/opt/bin"] }),
            vec!["PATH=/opt/bin".to_string()],
        ),
        (
            "scratch",
            serde_json::Value::Null,
            vec![default_path.clone()],
        ),
    ];
    for (name, config, want) in table {
        let harness = Harness::new();
        let from = if config.is_null() {
            "scratch"
        } else {
            harness.push_base_with_config("base.invalid/base:1", config, &[("etc/base", "b")]);
            "base.invalid/base:1"
        };
        let built = harness.build(&format!("FROM {from}\nRUN make\n")).await;
        assert_eq!(built.image.config.config.env, want, "{name}");
    }
}

/// A base image is the first link of the chain, by its manifest digest:
/// another image under the same tag invalidates every key after it.
#[tokio::test]
async fn a_changed_base_image_invalidates_every_key() {
    let harness = Harness::new();
    let text = "FROM base.invalid/base:1\nRUN one\nUSER 1\nRUN two\n";
    harness.push_base("base.invalid/base:1", None, &[("etc/base", "first")]);
    harness.build(text).await;
    let again = harness.build(text).await;
    assert_eq!(again.lookups(), [("RUN one", true), ("RUN two", true)]);

    harness.push_base("base.invalid/base:1", None, &[("etc/base", "second")]);
    let changed = harness.build(text).await;
    let env = [("PATH", BASE_PATH)];
    let parent = base_key(BaseOf::Image {
        manifest_digest: &harness.bases.digest_of("base.invalid/base:1"),
    });
    let one = key_after(&parent, "RUN one", &env, &[]);
    let user = key_after(&one, "USER 1", &env, &[]);
    let two = key_after(&user, "RUN two", &env, &[]);
    assert_eq!(
        changed.lookups,
        [
            Looked {
                what: "RUN one".to_string(),
                key: one,
                hit: false
            },
            Looked {
                what: "RUN two".to_string(),
                key: two,
                hit: false
            },
        ]
    );
    assert_eq!(changed.ran(), [("one", "/"), ("two", "/")]);
}

/// Without `--cache` nothing is looked up and every step runs; with the
/// cache but without `--cache-run-layers`, RUN and WORKDIR are never looked
/// up (COPY still is).
#[tokio::test]
async fn cache_settings_decide_which_steps_are_looked_up() {
    let text = "FROM scratch\nWORKDIR /a\nCOPY f /f\nRUN make\n";
    let table: [(&str, Option<FakeCache>, StepLookups); 3] = [
        ("no cache", None, &[]),
        (
            "copy layers only",
            Some(FakeCache::new(false, true)),
            &[("COPY f /f", true)],
        ),
        (
            "run layers only",
            Some(FakeCache::new(true, false)),
            &[("WORKDIR /a", true), ("RUN make", true)],
        ),
    ];
    for (name, cache, lookups) in table {
        let harness = Harness::with_cache(cache);
        harness.write_context(&[("f", "content")]);
        harness.build(text).await;
        let second = harness.build(text).await;
        assert_eq!(second.lookups(), lookups, "{name}");
    }
}

/// `--single-snapshot`: nothing is looked up or stored, every step runs
/// and writes into the root filesystem, and the stage's one layer is taken
/// at its end; the key chain goes on as without it (a later build or
/// stage depends on it).
#[tokio::test]
async fn single_snapshot_runs_every_step_and_keeps_the_chain() {
    let mut harness = Harness::new();
    harness.single_snapshot = true;
    harness.write_context(&[("f", "content")]);
    let text = "FROM scratch\nWORKDIR /app\nCOPY f .\nRUN make\nENV A=1\n";
    harness.build(text).await;
    let built = harness.build(text).await;
    assert!(built.lookups.is_empty(), "{:?}", built.lookups);
    assert_eq!(built.ran(), [("make", "/app")]);
    assert_eq!(
        built.history(),
        [
            "WORKDIR /app",
            "COPY f .",
            "RUN make",
            "ENV A=1",
            "single snapshot of the stage (--single-snapshot) +layer"
        ]
    );
    let file = format!("file 644 {}", crate::image::sha256_digest(b"content"));
    let workdir = key_after(&base_key(BaseOf::Scratch), "WORKDIR /app", SCRATCH_ENV, &[]);
    let copy = key_after(&workdir, "COPY f .", SCRATCH_ENV, &[("f", &file)]);
    let run = key_after(&copy, "RUN make", SCRATCH_ENV, &[]);
    let env = key_after(&run, "ENV A=1", SCRATCH_ENV, &[]);
    assert_eq!(built.image.cache_key, env);
    let Some(RootFs::Dir(root)) = &built.image.rootfs else {
        panic!("the root filesystem was not kept")
    };
    assert_eq!(
        std::fs::read_to_string(root.path().join("app/f")).unwrap(),
        "content"
    );
}

/// Every kind of step through the executor, against values taken from the
/// executor before it became one pipeline (f8727f7): the keys, the planned
/// layers (COPY, ADD, here-documents, WORKDIR as root and as a USER) and
/// the history are the same bytes. Layers are compared by diffID, the
/// digest of the tar kiln writes, so a new compressor version does not
/// fail this test. (RUN's layer holds a file the test wrote, owned by
/// whoever runs it: only its presence is checked.)
#[tokio::test]
async fn keys_layers_and_history_are_unchanged() {
    let harness = Harness::new();
    harness.write_context(&[("f", "content"), ("g", "other")]);
    let text = "FROM scratch\nARG V=1\nWORKDIR /app\nCOPY f .\nCOPY <<EOF /etc/motd\nhello $V\nEOF\nADD g /added/\nENV A=$V\nRUN make\nUSER 1:2\nWORKDIR sub\nLABEL l=v\n";
    let built = harness.build(text).await;
    assert_eq!(built.ran(), [("make", "/app")]);
    let mut diff_ids = built.image.config.rootfs.diff_ids.clone();
    assert_eq!(diff_ids.len(), 6);
    assert_eq!(built.image.layers.len(), 6);
    diff_ids.remove(4);
    assert_eq!(
        diff_ids,
        [
            "sha256:a07d59294c42610f96835cced195982c2f90d60d52be8b30895e662136bdac75",
            "sha256:2be3abd13f1ccf94c30206be24b6a0a618eb59177e1aa8d6135e88e20aca7d80",
            "sha256:0101005104910b33c6adfefc3700443333524fd8e05aed07917c2644d6bc974f",
            "sha256:749742e7b321ea3be34bf12ef541ebbb4d60022ae8949c310f77457df29c66d4",
            "sha256:ac12f754078982d4c83055f59cca888f21dcd7b2e5b3bdca7eb7e660eadb63be",
        ]
    );
    assert_eq!(
        built.history(),
        [
            "WORKDIR /app +layer",
            "COPY f . +layer",
            "COPY <<EOF /etc/motd +layer",
            "ADD g /added/ +layer",
            "ENV A=$V",
            "RUN make +layer",
            "USER 1:2",
            "WORKDIR sub +layer",
            "LABEL l=v"
        ]
    );
    assert_eq!(
        built.image.cache_key,
        "sha256:28a08dc36687afceb2fc92b5125af53136e36327639d94bdf1202b58e8ea77ac"
    );
}

/// A failed RUN fails the build with its exit code and line, and leaves
/// nothing in the cache for itself: the steps before it are cached, and a
/// rebuild runs it again.
#[tokio::test]
async fn a_failed_run_is_not_cached() {
    let harness = Harness::new();
    let text = "FROM scratch\nRUN one\nRUN exit-3\n";
    let error = match harness.try_build(text).await {
        Ok(_) => panic!("the build succeeded"),
        Err(error) => error,
    };
    assert!(
        matches!(
            &error,
            BuildError::RunFailed {
                line: 3,
                code: 3,
                ..
            }
        ),
        "{error:?}"
    );
    let cached: Vec<String> = harness
        .cache
        .as_ref()
        .unwrap()
        .entries
        .lock()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(cached, chain(&["RUN one"]));
    harness.runner.take_ran();
    harness.cache.as_ref().unwrap().take_lookups();
    assert!(harness.try_build(text).await.is_err());
    let ran: Vec<String> = harness
        .runner
        .take_ran()
        .into_iter()
        .map(|r| r.command)
        .collect();
    assert_eq!(ran, ["exit-3"]);
}

/// The root filesystem a RUN sees holds every layer before it: a planned
/// layer (COPY) applied after it is written, and a cached one applied when
/// it is restored into a root filesystem already unpacked.
#[tokio::test]
async fn a_run_sees_the_layers_before_it() {
    // Only COPY is cached: WORKDIR runs and unpacks the root filesystem
    // before the COPY hits, so the hit is applied to it.
    let harness = Harness::with_cache(Some(FakeCache::new(false, true)));
    harness.write_context(&[("f", "content")]);
    let text = "FROM scratch\nWORKDIR /w\nCOPY f .\nRUN look\n";
    let first = harness.build(text).await;
    assert_eq!(first.ran[0].saw, ["w/f"]);
    let second = harness.build(text).await;
    assert_eq!(second.lookups(), [("COPY f .", true)]);
    assert_eq!(second.ran[0].saw, ["w/f"]);
}

/// The root filesystem is kept only while something reads it again: after
/// the stage's last file step (and nothing built FROM it) it is dropped
/// rather than brought up to date.
#[tokio::test]
async fn the_root_filesystem_is_dropped_after_the_last_file_step() {
    let harness = Harness::new();
    harness.write_context(&[("f", "content")]);
    let last_copy = harness
        .build("FROM scratch\nRUN one\nCOPY f /f\nENV A=1\n")
        .await;
    assert!(last_copy.image.rootfs.is_none());
    let copy_then_run = harness.build("FROM scratch\nCOPY f /g\nRUN two\n").await;
    let Some(RootFs::Dir(root)) = &copy_then_run.image.rootfs else {
        panic!("the root filesystem was dropped before the RUN");
    };
    assert_eq!(files_in(root.path()), ["g", "two"]);
}

/// Serves `body` to every GET on loopback (until the test ends): ADD's
/// URL sources without a network.
fn serve(body: Arc<Mutex<String>>) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                let read = stream.read(&mut buffer).unwrap();
                if read == 0 {
                    break;
                }
                request.extend_from_slice(&buffer[..read]);
            }
            let body = body.lock().unwrap().clone();
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(response.as_bytes()).unwrap();
        }
    });
    port
}

/// An ADD of a URL is known only by downloading it: it is never looked up
/// nor stored, and its key is taken from the layer it wrote — so the steps
/// after it hit while the download is the same, and miss when it changes.
#[tokio::test]
async fn an_add_of_a_url_is_keyed_by_the_layer_it_wrote() {
    let body = Arc::new(Mutex::new("one\n".to_string()));
    let port = serve(Arc::clone(&body));
    let harness = Harness::new();
    let add = format!("ADD http://127.0.0.1:{port}/tool.txt /opt/");
    let text = format!("FROM scratch\n{add}\nRUN one\n");

    let first = harness.build(&text).await;
    assert_eq!(first.lookups(), [("RUN one", false)]);
    let diff_id = &first.image.config.rootfs.diff_ids[0];
    let add_key = key_after(
        &base_key(BaseOf::Scratch),
        &add,
        SCRATCH_ENV,
        &[("(layer)", diff_id)],
    );
    assert_eq!(
        first.lookups[0].key,
        key_after(&add_key, "RUN one", SCRATCH_ENV, &[])
    );

    let same = harness.build(&text).await;
    assert_eq!(same.lookups(), [("RUN one", true)]);
    assert!(same.ran.is_empty(), "{:?}", same.ran);

    *body.lock().unwrap() = "two\n".to_string();
    let changed = harness.build(&text).await;
    assert_eq!(changed.lookups(), [("RUN one", false)]);
    assert_eq!(changed.ran(), [("one", "/")]);
}

/// A URL named through an ARG is a download too, told after expansion: the
/// cache does not look for it in the context (the conformance suite's
/// kaniko cases failed with "file not found in build context" under
/// `--cache` before).
#[tokio::test]
async fn an_add_of_a_url_from_an_arg_is_downloaded_under_the_cache() {
    let body = Arc::new(Mutex::new("one\n".to_string()));
    let port = serve(Arc::clone(&body));
    let harness = Harness::new();
    let text = format!(
        "FROM scratch\nARG SERVER=http://127.0.0.1:{port}\nADD ${{SERVER}}/tool.txt /opt/\nRUN one\n"
    );
    let first = harness.build(&text).await;
    assert_eq!(first.lookups(), [("RUN one", false)]);
    assert_eq!(first.ran[0].saw, ["opt/tool.txt"]);
    let same = harness.build(&text).await;
    assert_eq!(same.lookups(), [("RUN one", true)]);
}

/// ADD as COPY: a wildcard matching nothing beside a file is no second
/// source (the file is copied *as* the destination, as BuildKit does);
/// alone, it is still an error.
#[tokio::test]
async fn an_add_with_an_empty_wildcard_beside_a_file_copies_the_file() {
    let harness = Harness::new();
    harness.write_context(&[("f", "content")]);
    let built = harness
        .build("FROM scratch\nADD nothing* f /out\nRUN look\n")
        .await;
    assert_eq!(built.ran[0].saw, ["out"]);
    let Err(alone) = harness.try_build("FROM scratch\nADD nothing* /out\n").await else {
        panic!("an ADD of nothing was built");
    };
    assert!(alone.to_string().contains("nothing*"), "{alone}");
}

/// A base whose ONBUILD trigger copies from a stage of the Dockerfile
/// being built: planning cannot see that dependency (the trigger is known
/// once the base is pulled), so the stage is built between the FROM and
/// the triggers, also when the plan left it out as unused. The unused
/// stage that cannot build shows the others were still skipped.
#[tokio::test]
async fn an_onbuild_copy_from_a_stage_builds_that_stage() {
    let harness = Harness::new();
    harness.write_context(&[("f", "asset")]);
    harness.push_base_with_config(
        "base.invalid/onbuild:1",
        serde_json::json!({
            "Env": [format!("PATH={BASE_PATH}")],
            "OnBuild": ["COPY --from=assets /a /from-assets"],
        }),
        &[("etc/base", "b")],
    );
    let text = "FROM scratch AS assets\nCOPY f /a\n\
                FROM scratch AS unused\nCOPY missing /x\n\
                FROM base.invalid/onbuild:1\nRUN look\n";
    let built = harness.try_build_planned(text, true).await.unwrap();
    assert_eq!(built.ran(), [("look", "/")]);
    assert_eq!(built.ran[0].saw, ["etc/base", "from-assets"]);

    // Every stage planned (kaniko's default): `unused` fails as before.
    let Err(err) = harness.try_build_planned(text, false).await else {
        panic!("the unused stage was built without its file");
    };
    assert!(err.to_string().contains("missing"), "{err}");
}

/// Two stages whose bases' triggers copy from each other cannot be built:
/// a cycle, named, rather than endless recursion.
#[tokio::test]
async fn onbuild_triggers_copying_from_each_other_are_a_cycle() {
    let harness = Harness::new();
    for (reference, from) in [("base.invalid/a:1", "b"), ("base.invalid/b:1", "a")] {
        harness.push_base_with_config(
            reference,
            serde_json::json!({ "OnBuild": [format!("COPY --from={from} /x /x")] }),
            &[("x", "x")],
        );
    }
    let text = "FROM base.invalid/a:1 AS a\nFROM base.invalid/b:1 AS b\nFROM a\n";
    let Err(err) = harness.try_build_planned(text, true).await else {
        panic!("a cycle of triggers was built");
    };
    assert!(
        err.to_string()
            .contains("circular dependency detected on stage: a"),
        "{err}"
    );
}

/// Without a cache, only the layers of the stages the image is made of are
/// compressed: a stage that is only copied from keeps plain tar (nobody
/// reads its layers compressed); with a cache every stage's are, since
/// they are stored there.
#[tokio::test]
async fn only_layers_that_leave_the_build_are_compressed() {
    let text = "FROM scratch AS tools\nCOPY f /tool\nFROM scratch AS base\nCOPY f /base\nFROM base\nCOPY --from=tools /tool /tool\n";
    // The blob store's files by their first bytes: gzip or plain tar.
    fn kinds(store: &BlobStore) -> (usize, usize) {
        let (mut gzip, mut tar) = (0, 0);
        let mut dirs = vec![store.root().to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let bytes = std::fs::read(&path).unwrap();
                if bytes.starts_with(&[0x1f, 0x8b]) {
                    gzip += 1;
                } else if bytes.len() >= 262 && &bytes[257..262] == b"ustar" {
                    tar += 1;
                }
            }
        }
        (gzip, tar)
    }
    // (with a cache, gzip blobs, plain tar blobs). The final stage's COPY
    // --from writes the same layer as the tools stage's COPY (same file,
    // path and zero times): compressed, the two are one blob.
    for (cache, want) in [(false, (2, 1)), (true, (2, 0))] {
        let harness = Harness::with_cache(cache.then(|| FakeCache::new(true, true)));
        harness.write_context(&[("f", "content")]);
        let built = harness.try_build_planned(text, true).await.unwrap();
        assert!(
            built
                .image
                .layers
                .iter()
                .all(|l| l.descriptor.media_type.ends_with("tar+gzip")),
            "{:?}",
            built.image.layers
        );
        assert_eq!(kinds(&harness.store), want, "cache: {cache}");
    }
}

/// Several target platforms build a `$BUILDPLATFORM` stage that sees
/// nothing of them once: the second platform's build takes the first's
/// stage (its files unpacked from its layers) and runs only its own steps.
/// A stage that declares `TARGETARCH` is built for each.
#[tokio::test]
async fn a_build_platform_stage_is_built_once_for_every_target() {
    let harness = Harness::with_cache(None);
    let shared = super::shared::SharedStages::default();
    let text = "FROM --platform=$BUILDPLATFORM scratch AS tools\nRUN tool\nFROM --platform=$BUILDPLATFORM scratch AS cross\nARG TARGETARCH\nRUN cross\nFROM scratch\nCOPY --from=tools /tool /tool\nCOPY --from=cross /cross /cross\nRUN app\n";
    let amd64 = harness
        .try_build_for(text, true, &platform(), Some(&shared))
        .await
        .unwrap();
    assert_eq!(amd64.ran(), [("tool", "/"), ("cross", "/"), ("app", "/")]);
    let arm64: Platform = "linux/arm64".parse().unwrap();
    let built = harness
        .try_build_for(text, true, &arm64, Some(&shared))
        .await
        .unwrap();
    assert_eq!(built.ran(), [("cross", "/"), ("app", "/")]);
    // The shared stage's file reached the second image all the same.
    let app = built.ran.last().unwrap();
    assert!(app.saw.iter().any(|f| f == "tool"), "{:?}", app.saw);
    assert_eq!(built.image.layers.len(), amd64.image.layers.len());
}

/// A stage built `FROM` a stage nothing later reads takes over its root
/// filesystem: the chain base → deps → final runs in one directory,
/// unpacked once; a stage still read later (`COPY --from`) keeps its own.
#[tokio::test]
async fn a_stage_takes_over_the_root_of_the_stage_it_is_from() {
    let harness = Harness::with_cache(None);
    let text = "FROM scratch AS base\nRUN a\nFROM base AS deps\nRUN b\nFROM deps\nRUN c\n";
    let built = harness.try_build_planned(text, true).await.unwrap();
    let roots: Vec<&PathBuf> = built.ran.iter().map(|r| &r.root).collect();
    assert_eq!(roots.len(), 3);
    assert!(roots.iter().all(|r| *r == roots[0]), "{roots:?}");
    assert_eq!(built.ran[2].saw, ["a", "b"]);

    let text = "FROM scratch AS base\nRUN a\nFROM base AS deps\nRUN b\nFROM deps\nCOPY --from=base /a /copied\nRUN c\n";
    let built = harness.try_build_planned(text, true).await.unwrap();
    let roots: Vec<&PathBuf> = built.ran.iter().map(|r| &r.root).collect();
    // deps takes nothing from base (read later); the final stage takes deps'.
    assert_ne!(roots[0], roots[1]);
    assert_eq!(roots[1], roots[2]);
    assert_eq!(built.ran[2].saw, ["a", "b", "copied"]);
}
