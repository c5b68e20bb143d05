//! The kaniko peer corpus: kaniko's own integration Dockerfiles
//! (GoogleContainerTools/kaniko at 236ba5690, `integration/dockerfiles/`
//! and `integration/dockerfiles-with-context/`), adapted to build offline
//! from the loopback registry and HTTP server, in
//! `e2e/conformance-kaniko/cases/<name>/`. kiln and BuildKit build each
//! included case, as `docker build` and kaniko do in kaniko's own test.
//! See `e2e/conformance-kaniko/README.md` for what was changed per case
//! and why the others are skipped.

use super::{Case, PLAIN};

/// kaniko's build context for `dockerfiles/`: its `integration/`
/// directory, here `e2e/conformance-kaniko/context` (relative to the
/// corpus directory). The Dockerfile stays in the case's directory.
const SHARED: Case = Case {
    context: Some("context"),
    ..PLAIN
};

/// Every file of kaniko's `integration/dockerfiles/` and every
/// `integration/dockerfiles-with-context/*/Dockerfile` at 236ba5690: `None`
/// when it is a case of this corpus (named after the file, or after its
/// directory for `dockerfiles-with-context`), else why it is skipped.
pub const FILES: &[(&str, Option<&str>)] = &[
    ("dockerfiles/1097", None),
    ("dockerfiles/Dockerfile_dockerignore_relative", None),
    (
        "dockerfiles/Dockerfile_dockerignore_relative.dockerignore",
        Some(
            "not a Dockerfile: the .dockerignore of Dockerfile_dockerignore_relative, \
             kept beside it as Dockerfile.dockerignore",
        ),
    ),
    (
        "dockerfiles/Dockerfile_git_buildcontext",
        Some("its context is kaniko's own git repository, cloned from GitHub"),
    ),
    (
        "dockerfiles/Dockerfile_hardlink_base",
        Some("installs git with apk from the Alpine mirrors"),
    ),
    ("dockerfiles/Dockerfile_onbuild_base", None),
    ("dockerfiles/Dockerfile_registry_mirror", None),
    ("dockerfiles/Dockerfile_relative_copy", None),
    ("dockerfiles/Dockerfile_test_add", None),
    ("dockerfiles/Dockerfile_test_add_404", None),
    (
        "dockerfiles/Dockerfile_test_add_chown_intermediate_dirs",
        None,
    ),
    (
        "dockerfiles/Dockerfile_test_add_dest_symlink_dir",
        Some(
            "its subject is phusion/baseimage's /etc/service, which no image made from \
             the busybox fixture has",
        ),
    ),
    ("dockerfiles/Dockerfile_test_add_url_with_arg", None),
    ("dockerfiles/Dockerfile_test_arg_blank_with_quotes", None),
    ("dockerfiles/Dockerfile_test_arg_from_quotes", None),
    ("dockerfiles/Dockerfile_test_arg_from_single_quotes", None),
    ("dockerfiles/Dockerfile_test_arg_multi", None),
    ("dockerfiles/Dockerfile_test_arg_multi_empty_val", None),
    ("dockerfiles/Dockerfile_test_arg_multi_with_quotes", None),
    ("dockerfiles/Dockerfile_test_arg_secret", None),
    ("dockerfiles/Dockerfile_test_arg_two_level", None),
    ("dockerfiles/Dockerfile_test_cache", None),
    ("dockerfiles/Dockerfile_test_cache_copy", None),
    (
        "dockerfiles/Dockerfile_test_cache_copy_oci",
        Some(
            "the same Dockerfile as Dockerfile_test_cache_copy; kaniko builds it into an \
             OCI-layout cache, a format kiln does not have",
        ),
    ),
    (
        "dockerfiles/Dockerfile_test_cache_install",
        Some("installs make with apt-get from the Debian mirrors"),
    ),
    (
        "dockerfiles/Dockerfile_test_cache_install_oci",
        Some("installs make with apt-get from the Debian mirrors"),
    ),
    (
        "dockerfiles/Dockerfile_test_cache_oci",
        Some(
            "the same Dockerfile as Dockerfile_test_cache; kaniko builds it into an \
             OCI-layout cache, a format kiln does not have",
        ),
    ),
    ("dockerfiles/Dockerfile_test_cache_perm", None),
    (
        "dockerfiles/Dockerfile_test_cache_perm_oci",
        Some(
            "the same Dockerfile as Dockerfile_test_cache_perm; kaniko builds it into an \
             OCI-layout cache, a format kiln does not have",
        ),
    ),
    ("dockerfiles/Dockerfile_test_cmd", None),
    ("dockerfiles/Dockerfile_test_complex_substitution", None),
    ("dockerfiles/Dockerfile_test_copy", None),
    (
        "dockerfiles/Dockerfile_test_copy_bucket",
        Some(
            "the same Dockerfile as Dockerfile_test_copy, with its context in a Google \
             Cloud Storage bucket",
        ),
    ),
    (
        "dockerfiles/Dockerfile_test_copy_chown_intermediate_dirs",
        None,
    ),
    (
        "dockerfiles/Dockerfile_test_copy_chown_nonexisting_user",
        None,
    ),
    ("dockerfiles/Dockerfile_test_copy_reproducible", None),
    ("dockerfiles/Dockerfile_test_copy_root_multistage", None),
    (
        "dockerfiles/Dockerfile_test_copy_same_file_many_times",
        None,
    ),
    ("dockerfiles/Dockerfile_test_copy_symlink", None),
    ("dockerfiles/Dockerfile_test_copyadd_chmod", None),
    ("dockerfiles/Dockerfile_test_daemons", None),
    ("dockerfiles/Dockerfile_test_dangling_symlink", None),
    ("dockerfiles/Dockerfile_test_deleted_file_cached", None),
    ("dockerfiles/Dockerfile_test_dockerignore", None),
    ("dockerfiles/Dockerfile_test_env", None),
    ("dockerfiles/Dockerfile_test_expose", None),
    ("dockerfiles/Dockerfile_test_extract_fs", None),
    (
        "dockerfiles/Dockerfile_test_extraction",
        Some(
            "its only step is FROM gcr.io/kaniko-test/extraction-base-image, an image \
             of kaniko's own project (kaniko's test skips it too)",
        ),
    ),
    ("dockerfiles/Dockerfile_test_from_multistage_capital", None),
    (
        "dockerfiles/Dockerfile_test_hardlink",
        Some(
            "its subject is hard links inside composer, php, jboss and kaniko-test \
             images from Docker Hub and gcr.io (kaniko's test skips it too)",
        ),
    ),
    ("dockerfiles/Dockerfile_test_ignore", None),
    (
        "dockerfiles/Dockerfile_test_issue_1039",
        Some("installs gcc and make with yum from Red Hat's UBI repositories"),
    ),
    (
        "dockerfiles/Dockerfile_test_issue_1837",
        Some("installs iputils with yum from Red Hat's UBI repositories"),
    ),
    (
        "dockerfiles/Dockerfile_test_issue_2049",
        Some("installs curl, git and others with apt-get from the Debian mirrors"),
    ),
    (
        "dockerfiles/Dockerfile_test_issue_2066",
        Some("installs and removes libbsd0 with apt from the Ubuntu mirrors"),
    ),
    ("dockerfiles/Dockerfile_test_issue_519", None),
    ("dockerfiles/Dockerfile_test_issue_647", None),
    (
        "dockerfiles/Dockerfile_test_issue_684",
        Some("upgrades and installs packages with apt-get from the Ubuntu mirrors"),
    ),
    ("dockerfiles/Dockerfile_test_issue_704", None),
    ("dockerfiles/Dockerfile_test_label", None),
    ("dockerfiles/Dockerfile_test_maintainer", None),
    ("dockerfiles/Dockerfile_test_meta_arg", None),
    ("dockerfiles/Dockerfile_test_metadata", None),
    ("dockerfiles/Dockerfile_test_multistage", None),
    (
        "dockerfiles/Dockerfile_test_multistage_args_issue_1911",
        None,
    ),
    ("dockerfiles/Dockerfile_test_mv_add", None),
    ("dockerfiles/Dockerfile_test_onbuild", None),
    ("dockerfiles/Dockerfile_test_parent_dir_perms", None),
    ("dockerfiles/Dockerfile_test_registry", None),
    (
        "dockerfiles/Dockerfile_test_replaced_hardlinks",
        Some(
            "its only step is FROM jboss/base-jdk, whose hard links replaced across \
             layers are the subject",
        ),
    ),
    ("dockerfiles/Dockerfile_test_replaced_symlinks", None),
    ("dockerfiles/Dockerfile_test_run", None),
    ("dockerfiles/Dockerfile_test_run_2", None),
    ("dockerfiles/Dockerfile_test_run_new", None),
    ("dockerfiles/Dockerfile_test_run_redo", None),
    ("dockerfiles/Dockerfile_test_scratch", None),
    ("dockerfiles/Dockerfile_test_snapshotter_ignorelist", None),
    ("dockerfiles/Dockerfile_test_target", None),
    ("dockerfiles/Dockerfile_test_user", None),
    ("dockerfiles/Dockerfile_test_user_home", None),
    ("dockerfiles/Dockerfile_test_user_nonexisting", None),
    ("dockerfiles/Dockerfile_test_user_run", None),
    ("dockerfiles/Dockerfile_test_volume", None),
    ("dockerfiles/Dockerfile_test_volume_2", None),
    ("dockerfiles/Dockerfile_test_volume_3", None),
    (
        "dockerfiles/Dockerfile_test_volume_4",
        Some(
            "its subject is a COPY into rabbitmq's image, whose VOLUME and files come \
             from Docker Hub",
        ),
    ),
    ("dockerfiles/Dockerfile_test_whitelist", None),
    ("dockerfiles/Dockerfile_test_workdir", None),
    ("dockerfiles/Dockerfile_test_workdir_with_user", None),
    ("dockerfiles/TestReplaceFolderWithFile", None),
    ("dockerfiles/TestReplaceFolderWithLink", None),
    (
        "dockerfiles-with-context/issue-1020/Dockerfile",
        Some("runs npm ci in atomist/sdm-base, from Docker Hub and the npm registry"),
    ),
    ("dockerfiles-with-context/issue-1315/Dockerfile", None),
    ("dockerfiles-with-context/issue-2075/Dockerfile", None),
    ("dockerfiles-with-context/issue-57/Dockerfile", None),
    ("dockerfiles-with-context/issue-721/Dockerfile", None),
    (
        "dockerfiles-with-context/issue-774/Dockerfile",
        Some(
            "its subject is phusion/baseimage's /etc/service, which no image made from \
             the busybox fixture has",
        ),
    ),
];

/// The case a file of [`FILES`] is, by name.
pub fn case_name(file: &str) -> &str {
    file.strip_prefix("dockerfiles/")
        .or_else(|| {
            file.strip_prefix("dockerfiles-with-context/")
                .and_then(|f| f.strip_suffix("/Dockerfile"))
        })
        .unwrap_or(file)
}

/// Every included case and how it is built: kaniko's build arguments
/// (`integration/images.go`'s `argsMap`), its `--target`, its kaniko
/// flags that kiln takes as a drop-in, and the differences from BuildKit,
/// each explained in the README.
pub const CASES: &[(&str, Case)] = &[
    ("1097", SHARED),
    ("Dockerfile_dockerignore_relative", SHARED),
    ("Dockerfile_onbuild_base", SHARED),
    ("Dockerfile_registry_mirror", SHARED),
    (
        "Dockerfile_relative_copy",
        Case {
            // kaniko's TestRelativePaths builds it with `--context=./context`.
            context: Some("context/context"),
            ..PLAIN
        },
    ),
    (
        "Dockerfile_test_add",
        Case {
            build_args: &["file=context/foo"],
            kiln_flags: &["--single-snapshot"],
            buildkit_differs_in: &["/sys", "/sys/fs", "/sys/fs/foo"],
            ..SHARED
        },
    ),
    (
        "Dockerfile_test_add_404",
        Case {
            // The loopback server's 404 for ${HTTP}/404, in each tool's words.
            kiln_refuses: Some("/404: HTTP status 404"),
            buildkit_refuses: Some("failed to load cache key: invalid response status 404"),
            ..SHARED
        },
    ),
    ("Dockerfile_test_add_chown_intermediate_dirs", SHARED),
    ("Dockerfile_test_add_url_with_arg", SHARED),
    ("Dockerfile_test_arg_blank_with_quotes", SHARED),
    ("Dockerfile_test_arg_from_quotes", SHARED),
    ("Dockerfile_test_arg_from_single_quotes", SHARED),
    ("Dockerfile_test_arg_multi", SHARED),
    ("Dockerfile_test_arg_multi_empty_val", SHARED),
    ("Dockerfile_test_arg_multi_with_quotes", SHARED),
    (
        "Dockerfile_test_arg_secret",
        Case {
            // kaniko gives SSH_PRIVATE_KEY's value through the environment
            // (`--build-arg SSH_PRIVATE_KEY`), which buildctl cannot.
            build_args: &["SSH_PRIVATE_KEY=ThEPriv4t3Key", "SSH_PUBLIC_KEY=Pµbl1cK€Y"],
            // kaniko's checkArgsNotPrinted for this Dockerfile.
            kiln_log_lacks: &["ThEPriv4t3Key", "Pµbl1cK€Y"],
            ..SHARED
        },
    ),
    ("Dockerfile_test_arg_two_level", SHARED),
    ("Dockerfile_test_cache", SHARED),
    ("Dockerfile_test_cache_copy", SHARED),
    ("Dockerfile_test_cache_perm", SHARED),
    ("Dockerfile_test_cmd", SHARED),
    ("Dockerfile_test_complex_substitution", SHARED),
    ("Dockerfile_test_copy", SHARED),
    ("Dockerfile_test_copy_chown_intermediate_dirs", SHARED),
    ("Dockerfile_test_copy_chown_nonexisting_user", SHARED),
    (
        "Dockerfile_test_copy_reproducible",
        Case {
            kiln_flags: &["--reproducible"],
            ..SHARED
        },
    ),
    ("Dockerfile_test_copy_root_multistage", SHARED),
    ("Dockerfile_test_copy_same_file_many_times", SHARED),
    ("Dockerfile_test_copy_symlink", SHARED),
    ("Dockerfile_test_copyadd_chmod", SHARED),
    ("Dockerfile_test_daemons", SHARED),
    ("Dockerfile_test_dangling_symlink", SHARED),
    ("Dockerfile_test_deleted_file_cached", SHARED),
    ("Dockerfile_test_dockerignore", SHARED),
    ("Dockerfile_test_env", SHARED),
    ("Dockerfile_test_expose", SHARED),
    ("Dockerfile_test_extract_fs", SHARED),
    (
        "Dockerfile_test_from_multistage_capital",
        Case {
            buildkit_refuses: Some(
                "failed to parse stage name \"BUG_stage\": invalid reference format: repository name (library/BUG_stage) must be lowercase",
            ),
            ..SHARED
        },
    ),
    ("Dockerfile_test_ignore", SHARED),
    (
        "Dockerfile_test_issue_519",
        Case {
            buildkit_refuses: Some(
                "failed to parse stage name \"BUG_stage\": invalid reference format: repository name (library/BUG_stage) must be lowercase",
            ),
            ..SHARED
        },
    ),
    ("Dockerfile_test_issue_647", SHARED),
    ("Dockerfile_test_issue_704", SHARED),
    ("Dockerfile_test_label", SHARED),
    (
        "Dockerfile_test_maintainer",
        Case {
            kiln_flags: &["--single-snapshot"],
            ..SHARED
        },
    ),
    ("Dockerfile_test_meta_arg", SHARED),
    ("Dockerfile_test_metadata", SHARED),
    (
        "Dockerfile_test_multistage",
        Case {
            build_args: &["file=/foo2"],
            ..SHARED
        },
    ),
    ("Dockerfile_test_multistage_args_issue_1911", SHARED),
    ("Dockerfile_test_mv_add", SHARED),
    (
        "Dockerfile_test_onbuild",
        Case {
            build_args: &["file=/tmp/onbuild"],
            base_case: Some("Dockerfile_onbuild_base"),
            ..SHARED
        },
    ),
    ("Dockerfile_test_parent_dir_perms", SHARED),
    ("Dockerfile_test_registry", SHARED),
    ("Dockerfile_test_replaced_symlinks", SHARED),
    (
        "Dockerfile_test_run",
        Case {
            build_args: &["file=/file"],
            ..SHARED
        },
    ),
    ("Dockerfile_test_run_2", SHARED),
    (
        "Dockerfile_test_run_new",
        Case {
            build_args: &["file=/file"],
            kiln_flags: &["--use-new-run=true"],
            ..SHARED
        },
    ),
    (
        "Dockerfile_test_run_redo",
        Case {
            build_args: &["file=/file"],
            kiln_flags: &["--snapshot-mode=redo"],
            ..SHARED
        },
    ),
    (
        "Dockerfile_test_scratch",
        Case {
            build_args: &[
                "image=scratch",
                "hello=hello-value",
                "file=context/foo",
                "file3=context/b*",
            ],
            kiln_flags: &["--single-snapshot"],
            ..SHARED
        },
    ),
    (
        "Dockerfile_test_snapshotter_ignorelist",
        Case {
            kiln_flags: &["--use-new-run=true"],
            ..SHARED
        },
    ),
    (
        "Dockerfile_test_target",
        Case {
            target: Some("second"),
            ..SHARED
        },
    ),
    ("Dockerfile_test_user", SHARED),
    ("Dockerfile_test_user_home", SHARED),
    ("Dockerfile_test_user_nonexisting", SHARED),
    ("Dockerfile_test_user_run", SHARED),
    ("Dockerfile_test_volume", SHARED),
    (
        "Dockerfile_test_volume_2",
        Case {
            kiln_refuses: Some("/bin/sh: can't create /foo1/hello: nonexistent directory"),
            buildkit_refuses: Some("/bin/sh: can't create /foo1/hello: nonexistent directory"),
            ..SHARED
        },
    ),
    ("Dockerfile_test_volume_3", SHARED),
    ("Dockerfile_test_whitelist", SHARED),
    (
        "Dockerfile_test_workdir",
        Case {
            build_args: &["workdir=/arg/workdir"],
            ..SHARED
        },
    ),
    ("Dockerfile_test_workdir_with_user", SHARED),
    ("TestReplaceFolderWithFile", SHARED),
    ("TestReplaceFolderWithLink", SHARED),
    // dockerfiles-with-context: each its own directory as the context.
    ("issue-1315", PLAIN),
    ("issue-2075", PLAIN),
    ("issue-57", PLAIN),
    ("issue-721", PLAIN),
];
