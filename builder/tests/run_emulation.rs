//! `--emulation=qemu` against the real thing: Debian's qemu-user-static
//! registered in this kernel's binfmt_misc (scripts/setup.sh does it), RUN
//! chrooted into the fixture's arm64 busybox image, pushed to a real
//! registry and read back with skopeo.
//!
//! These tests do not skip: when binfmt_misc has no qemu-aarch64 entry they
//! fail and say how to register it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Command, Output};

use kiln_builder::platform::Platform;
use kiln_builder::run::emulation::{self, BINFMT_MISC_DIR};
use support::TestRegistry;
use support::fixtures::{self, Fixtures};
use support::kiln::{
    assert_success, context, context_arg, kiln, kiln_with_env, layers_for, skopeo_json, stderr,
};

async fn setup() -> (TestRegistry, Fixtures) {
    require_arm64_interpreter();
    let registry = TestRegistry::start();
    let fixtures = fixtures::push_busybox_index(registry.host()).await;
    (registry, fixtures)
}

/// Fails the test, saying what to do, when this machine cannot run arm64
/// code.
fn require_arm64_interpreter() {
    let arm64: Platform = "linux/arm64".parse().unwrap();
    if let Err(err) = emulation::find_interpreter(Path::new(BINFMT_MISC_DIR), &arm64) {
        panic!(
            "this test runs arm64 code under qemu-user and the kernel cannot: {err}. \
             scripts/setup.sh installs qemu-user-static and runs scripts/binfmt.sh, which \
             registers it (as root)"
        );
    }
}

/// The content of `path` in the last layer of `reference`'s `arch` image
/// that has it.
fn file_in(reference: &str, arch: &str, path: &str) -> String {
    layers_for(reference, Some(arch))
        .into_iter()
        .rev()
        .find_map(|layer| layer.get(path).map(|entry| entry.4.clone()))
        .unwrap_or_else(|| panic!("{path} not in {reference} for {arch}"))
}

fn tag_exists(reference: &str) -> bool {
    Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{reference}"),
        ])
        .output()
        .unwrap()
        .status
        .success()
}

/// Runs kiln with `KILN_EMULATION` set (the support helper clears it), and
/// an empty docker config.
async fn kiln_with_emulation_env(args: &[String], value: &str) -> Output {
    let config = tempfile::tempdir().unwrap();
    tokio::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env("DOCKER_CONFIG", config.path())
        .env("KILN_EMULATION", value)
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("KILN_BUILDER_IMAGE")
        .env_remove("KILN_BUILD_REQUEST")
        .output()
        .await
        .unwrap()
}

#[test]
fn the_arm64_fixture_holds_a_real_arm64_busybox() {
    let layer = fixtures::busybox_layer("arm64");
    let mut archive = tar::Archive::new(layer.tar.as_slice());
    let mut busybox = None;
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap() == Path::new("bin/busybox") {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
            busybox = Some(bytes);
        }
    }
    let busybox = busybox.expect("bin/busybox in the arm64 fixture layer");
    // ELF, 64-bit, little-endian, e_machine EM_AARCH64 (183).
    assert_eq!(&busybox[..6], b"\x7fELF\x02\x01");
    assert_eq!(u16::from_le_bytes([busybox[18], busybox[19]]), 183);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_platforms_run_natively_and_under_qemu() {
    let (registry, fixtures) = setup().await;
    let ctx = context(
        &format!(
            "FROM {}\nRUN uname -m > /arch && cat /etc/kiln-fixture-arch > /base-arch\n",
            fixtures.index
        ),
        &[],
    );
    let image = format!("{}/emulated:1.0", registry.host());
    let output = kiln(&[
        context_arg(ctx.path()),
        format!("--destination={image}"),
        "--multi-platform=linux/amd64,linux/arm64".to_string(),
        "--emulation=qemu".to_string(),
        "--publish-index=true".to_string(),
        "--oci-mode=oci".to_string(),
    ])
    .await;
    assert_success(&output);
    let log = stderr(&output);
    assert!(
        log.contains(
            "[linux/arm64] RUN for linux/arm64 executes under qemu-user emulation \
             (binfmt_misc entry qemu-aarch64, "
        ),
        "{log}"
    );
    assert!(
        !log.contains("[linux/amd64] RUN for"),
        "amd64 runs natively: {log}"
    );

    let index = skopeo_json(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ]);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let children = index["manifests"].as_array().unwrap();
    assert_eq!(children.len(), 2);
    assert_eq!(children[0]["platform"]["architecture"], "amd64");
    assert_eq!(children[1]["platform"]["architecture"], "arm64");
    assert!(children[1]["platform"].get("variant").is_none(), "{index}");

    // What RUN wrote, read back from each child's layers: the arm64 one
    // ran the arm64 busybox (under qemu-aarch64), the amd64 one natively.
    assert_eq!(file_in(&image, "arm64", "arch"), "aarch64\n");
    assert_eq!(file_in(&image, "arm64", "base-arch"), "arm64\n");
    assert_eq!(file_in(&image, "amd64", "arch"), "x86_64\n");
    assert_eq!(file_in(&image, "amd64", "base-arch"), "amd64\n");

    // What a client pulling for each architecture gets.
    for (arch, layer_count) in [("arm64", 2), ("amd64", 2)] {
        let inspected = skopeo_json(&[
            "inspect",
            "--tls-verify=false",
            "--override-arch",
            arch,
            &format!("docker://{image}"),
        ]);
        assert_eq!(inspected["Architecture"], arch);
        assert_eq!(inspected["Os"], "linux");
        assert_eq!(
            inspected["Layers"].as_array().unwrap().len(),
            layer_count,
            "{arch}: {inspected}"
        );
    }
    let arm_config = skopeo_json(&[
        "inspect",
        "--config",
        "--raw",
        "--tls-verify=false",
        "--override-arch",
        "arm64",
        &format!("docker://{image}"),
    ]);
    assert_eq!(arm_config["architecture"], "arm64");
    assert!(arm_config.get("variant").is_none(), "{arm_config}");
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_says_which_platform_runs_under_emulation() {
    let (registry, fixtures) = setup().await;
    let ctx = context(&format!("FROM {}\nRUN uname -m\n", fixtures.index), &[]);
    let args = |emulation: &str| {
        vec![
            context_arg(ctx.path()),
            format!("--destination={}/dry:1", registry.host()),
            "--multi-platform=linux/amd64,linux/arm64".to_string(),
            format!("--emulation={emulation}"),
            "--dry-run".to_string(),
        ]
    };
    let output = kiln(&args("qemu")).await;
    assert_success(&output);
    let plan = String::from_utf8_lossy(&output.stdout);
    assert!(plan.contains("linux/amd64: runs here\n"), "{plan}");
    assert!(
        plan.contains(
            "linux/arm64: runs here, RUN for linux/arm64 under qemu-user emulation \
             (qemu-aarch64)\n"
        ),
        "{plan}"
    );
    // --emulation=none: the dry run refuses as the build does, with the
    // build's message.
    let output = kiln(&args("none")).await;
    assert_eq!(output.status.code(), Some(1));
    let refusal = "error: linux/arm64 cannot be built on this linux/amd64 machine: \
                   Dockerfile:2 `RUN uname -m` runs code for linux/arm64. Build it on native \
                   nodes with --driver=k8s, or emulate it with --emulation=qemu\n";
    assert!(stderr(&output).ends_with(refusal), "{}", stderr(&output));
    let mut build = args("none");
    build.pop();
    let output = kiln(&build).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).ends_with(refusal), "{}", stderr(&output));
    assert!(!tag_exists(&format!("{}/dry:1", registry.host())));
}

#[tokio::test(flavor = "multi_thread")]
async fn kiln_emulation_from_the_environment() {
    let (registry, fixtures) = setup().await;
    let ctx = context(
        &format!(
            "FROM {}\nRUN uname -m > /arch\nCMD [\"cat\", \"/arch\"]\n",
            fixtures.index
        ),
        &[],
    );
    let image = format!("{}/env-emulated:arm", registry.host());
    let output = kiln_with_emulation_env(
        &[
            context_arg(ctx.path()),
            format!("--destination={image}"),
            "--custom-platform=linux/arm64".to_string(),
        ],
        "qemu",
    )
    .await;
    assert_success(&output);
    assert!(
        stderr(&output).contains("executes under qemu-user emulation"),
        "{}",
        stderr(&output)
    );
    assert_eq!(file_in(&image, "arm64", "arch"), "aarch64\n");

    // KILN_EMULATION=none is the refusal, as with no emulation at all.
    let output = kiln_with_emulation_env(
        &[
            context_arg(ctx.path()),
            format!("--destination={}/env-emulated:none", registry.host()),
            "--custom-platform=linux/arm64".to_string(),
        ],
        "none",
    )
    .await;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains(
            "linux/arm64 cannot be built on this linux/amd64 machine: Dockerfile:2 \
             `RUN uname -m > /arch` runs code for linux/arm64. Build it on native nodes with \
             --driver=k8s, or emulate it with --emulation=qemu"
        ),
        "{}",
        stderr(&output)
    );
    assert!(!tag_exists(&format!(
        "{}/env-emulated:none",
        registry.host()
    )));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_architecture_without_an_interpreter_is_refused() {
    // Needs no interpreter of this machine's: no `setup()`.
    let registry = TestRegistry::start();
    let fixtures = fixtures::push_busybox_index(registry.host()).await;
    // kiln reads a binfmt_misc with nothing registered, whatever this
    // machine has: every foreign architecture lacks its interpreter.
    let binfmt = support::kiln::empty_binfmt_misc();
    let unregistered = "linux/riscv64";
    let host = Platform::host();
    let qemu_target = emulation::elf_machine(&unregistered.parse::<Platform>().unwrap())
        .unwrap()
        .qemu_target;
    let ctx = context(
        &format!("FROM {}\nCOPY app.txt /\nRUN make\n", fixtures.index),
        &[("app.txt", "app")],
    );
    let env = [("KILN_BINFMT_MISC_DIR", binfmt.path().as_os_str())];
    let output = kiln_with_env(
        &[
            context_arg(ctx.path()),
            format!("--destination={}/refused:1", registry.host()),
            format!("--multi-platform={host},{unregistered}"),
            "--emulation=qemu".to_string(),
            "--publish-index".to_string(),
        ],
        None,
        &env,
    )
    .await;
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains(&format!(
            "{unregistered} cannot be built on this {host} machine with --emulation=qemu: \
             Dockerfile:3 `RUN make` runs code for {unregistered}, and no qemu-user interpreter \
             for {unregistered} is registered in binfmt_misc ({} has no entry",
            binfmt.path().display()
        )),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "install qemu-user-static and register qemu-{qemu_target} with the F flag"
        )) && message.contains("or build on native nodes with --driver=k8s"),
        "{message}"
    );
    // --dry-run checks the same and fails the same way.
    let dry = kiln_with_env(
        &[
            context_arg(ctx.path()),
            format!("--destination={}/refused:1", registry.host()),
            format!("--multi-platform={host},{unregistered}"),
            "--emulation=qemu".to_string(),
            "--dry-run".to_string(),
        ],
        None,
        &env,
    )
    .await;
    assert!(!dry.status.success());
    assert!(
        stderr(&dry).contains(&format!(
            "no qemu-user interpreter for {unregistered} is registered in binfmt_misc"
        )),
        "{}",
        stderr(&dry)
    );
    // Refused before any work: not even the platforms that could build
    // were pushed.
    let listed = Command::new("skopeo")
        .args([
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{}/refused", registry.host()),
        ])
        .output()
        .unwrap();
    assert!(!listed.status.success(), "nothing may be pushed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_failing_on_one_platform_publishes_no_index() {
    let (registry, fixtures) = setup().await;
    let ctx = context(
        &format!(
            "FROM {}\nRUN [ \"$(uname -m)\" = x86_64 ]\n",
            fixtures.index
        ),
        &[],
    );
    let image = format!("{}/half:1", registry.host());
    let output = kiln(&[
        context_arg(ctx.path()),
        format!("--destination={image}"),
        "--multi-platform=linux/amd64,linux/arm64".to_string(),
        "--emulation=qemu".to_string(),
        "--publish-index".to_string(),
    ])
    .await;
    assert!(!output.status.success());
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains("1 of 2 platforms failed, no index published"),
        "{message}"
    );
    assert!(
        message.contains(
            "linux/arm64: Dockerfile:2: RUN [ \"$(uname -m)\" = x86_64 ]: RUN failed (exit 1)"
        ),
        "{message}"
    );
    assert!(
        !message.contains("linux/amd64: "),
        "amd64 passed the check: {message}"
    );
    assert!(!tag_exists(&image), "no index may be pushed");
}

/// Guide 001's quick start with a RUN: `--emulation` is not given, so
/// kiln uses the registered interpreter for arm64 (`auto`), warns once
/// naming the platform, the cost and `--driver=k8s`, and publishes both
/// platforms at the tag.
#[tokio::test(flavor = "multi_thread")]
async fn auto_emulation_is_the_default_and_warns() {
    let (registry, fixtures) = setup().await;
    let workspace = context(
        &format!("FROM {}\nRUN uname -m > /arch\n", fixtures.index),
        &[],
    );
    let image = format!("{}/myrepo/myimage:latest", registry.host());
    let output = kiln(&[
        format!("--dockerfile={}/Dockerfile", workspace.path().display()),
        format!("--context={}", workspace.path().display()),
        format!("--destination={image}"),
        "--platform=linux/amd64,linux/arm64".to_string(),
        "--driver=local".to_string(),
    ])
    .await;
    assert_success(&output);
    let log = stderr(&output);
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("executes under qemu-user emulation"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(
        warnings[0].contains("WARN")
            && warnings[0].contains(
                "[linux/arm64] RUN for linux/arm64 executes under qemu-user emulation \
                 (qemu-aarch64), typically 5 to 20 times slower than native; build on native \
                 nodes with --driver=k8s"
            ),
        "{log}"
    );
    assert_eq!(file_in(&image, "arm64", "arch"), "aarch64\n");
    assert_eq!(file_in(&image, "amd64", "arch"), "x86_64\n");
}
