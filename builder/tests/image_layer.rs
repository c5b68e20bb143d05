//! Layer blobs written by `image::layer`, read back with the `tar`,
//! `flate2` and `zstd` crates: content, metadata, determinism, digests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use kiln_builder::image::layer::{EntryKind, EntryMeta, LayerPlan, LayerWriter, Timestamps};
use kiln_builder::image::{Compression, Layer, ManifestFormat, sha256_digest};

const ALL: [Compression; 3] = [Compression::Gzip, Compression::Zstd, Compression::None];

fn decompress(layer: &Layer) -> Vec<u8> {
    let blob = fs::read(&layer.path).unwrap();
    match layer.compression {
        Compression::Gzip => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(blob.as_slice())
                .read_to_end(&mut out)
                .unwrap();
            out
        }
        Compression::Zstd => zstd::decode_all(blob.as_slice()).unwrap(),
        Compression::None => blob,
    }
}

/// A small tree on disk and a plan over it, pushed in a scrambled order.
fn sample_plan(src: &Path, mtime: u64) -> LayerPlan {
    fs::create_dir_all(src.join("app/bin")).unwrap();
    fs::write(src.join("app/bin/tool"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::write(src.join("app/data.txt"), vec![b'x'; 70_000]).unwrap();
    let meta = |mode| EntryMeta::new(mode, 0, 0, mtime);
    let mut plan = LayerPlan::new();
    let file = |name: &str| EntryKind::File {
        source: src.join(name),
    };
    plan.push(Path::new("app/data.txt"), file("app/data.txt"), meta(0o644))
        .unwrap();
    plan.push(
        Path::new("app/bin/tool"),
        file("app/bin/tool"),
        meta(0o4755),
    )
    .unwrap();
    plan.push(Path::new("app/bin"), EntryKind::Dir, meta(0o755))
        .unwrap();
    plan.push(Path::new("app"), EntryKind::Dir, meta(0o1777))
        .unwrap();
    plan.push(
        Path::new("app/link"),
        EntryKind::Symlink {
            target: PathBuf::from("bin/tool"),
        },
        meta(0o777),
    )
    .unwrap();
    plan.push(Path::new("etc/gone"), EntryKind::Whiteout, meta(0))
        .unwrap();
    plan
}

fn write(plan: LayerPlan, out: &Path, compression: Compression, ts: Timestamps) -> Layer {
    fs::create_dir_all(out).unwrap();
    plan.write_layer(out, compression, None, ts).unwrap()
}

#[test]
fn digest_size_and_diff_id_match_the_blob() {
    let dir = tempfile::tempdir().unwrap();
    for compression in ALL {
        let layer = write(
            sample_plan(&dir.path().join("src"), 1_000),
            &dir.path().join(compression.to_string()),
            compression,
            Timestamps::Keep,
        );
        let blob = fs::read(&layer.path).unwrap();
        assert_eq!(layer.digest, sha256_digest(&blob), "{compression}");
        assert_eq!(layer.size, blob.len() as u64, "{compression}");
        assert_eq!(
            layer.diff_id,
            sha256_digest(&decompress(&layer)),
            "{compression}"
        );
        assert_eq!(layer.compression, compression);
    }
}

#[test]
fn media_types_and_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    let layer = write(
        LayerPlan::new(),
        dir.path(),
        Compression::Zstd,
        Timestamps::Keep,
    );
    let d = layer.descriptor(ManifestFormat::Oci).unwrap();
    assert_eq!(d.media_type, "application/vnd.oci.image.layer.v1.tar+zstd");
    assert_eq!(d.digest, layer.digest);
    assert_eq!(d.size, layer.size);
    assert_eq!(
        layer
            .descriptor(ManifestFormat::Docker)
            .unwrap_err()
            .to_string(),
        "zstd compression needs OCI media types; use --oci-mode=oci or --compression=gzip"
    );
    // An empty layer is the two zero blocks that end a tar.
    assert_eq!(decompress(&layer), vec![0u8; 1024]);
}

#[test]
fn same_inputs_give_the_same_blob() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    for compression in ALL {
        let a = write(
            sample_plan(&src, 5),
            &dir.path().join("a"),
            compression,
            Timestamps::Keep,
        );
        let b = write(
            sample_plan(&src, 5),
            &dir.path().join("b"),
            compression,
            Timestamps::Keep,
        );
        assert_eq!(
            (&a.digest, &a.diff_id),
            (&b.digest, &b.diff_id),
            "{compression}"
        );
        assert_ne!(a.path, b.path);
    }
}

#[test]
fn timestamp_policies() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let out = dir.path().join("out");
    let digest = |mtime, ts| write(sample_plan(&src, mtime), &out, Compression::Gzip, ts).digest;
    // --reproducible: different mtimes, same layer.
    assert_eq!(digest(100, Timestamps::Zero), digest(200, Timestamps::Zero));
    // Without it they differ.
    assert_ne!(digest(100, Timestamps::Keep), digest(200, Timestamps::Keep));
    // SOURCE_DATE_EPOCH clamps newer files to the epoch, keeps older ones.
    assert_eq!(
        digest(200, Timestamps::ClampTo(150)),
        digest(300, Timestamps::ClampTo(150))
    );
    assert_ne!(
        digest(100, Timestamps::ClampTo(150)),
        digest(120, Timestamps::ClampTo(150))
    );
    let layer = write(
        sample_plan(&src, 900),
        &out,
        Compression::None,
        Timestamps::ClampTo(150),
    );
    let mut archive = tar::Archive::new(fs::File::open(&layer.path).unwrap());
    for entry in archive.entries().unwrap() {
        assert_eq!(entry.unwrap().header().mtime().unwrap(), 150);
    }
}

#[test]
fn compressed_headers_carry_no_time_or_name() {
    let dir = tempfile::tempdir().unwrap();
    let gz = write(
        sample_plan(&dir.path().join("src"), 7),
        &dir.path().join("gz"),
        Compression::Gzip,
        Timestamps::Keep,
    );
    let bytes = fs::read(&gz.path).unwrap();
    // Magic, deflate, FLG=0 (no FNAME/FCOMMENT/FEXTRA), MTIME=0.
    assert_eq!(bytes[..8], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
    let zst = write(
        sample_plan(&dir.path().join("src"), 7),
        &dir.path().join("zst"),
        Compression::Zstd,
        Timestamps::Keep,
    );
    assert_eq!(fs::read(&zst.path).unwrap()[..4], [0x28, 0xb5, 0x2f, 0xfd]);
}

#[test]
fn plan_is_written_in_canonical_order_with_exact_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let mut plan = sample_plan(&dir.path().join("src"), 1_700_000_000);
    plan.push(
        Path::new("app/bin"),
        EntryKind::Opaque,
        EntryMeta::new(0, 0, 0, 0),
    )
    .unwrap();
    let layer = write(
        plan,
        &dir.path().join("out"),
        Compression::Zstd,
        Timestamps::Keep,
    );
    let tar_bytes = decompress(&layer);
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    let mut got = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let h = entry.header().clone();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        got.push((
            String::from_utf8(h.path_bytes().to_vec()).unwrap(),
            h.entry_type(),
            h.mode().unwrap(),
            h.mtime().unwrap(),
            h.link_name_bytes().map(|l| l.to_vec()),
            content.len(),
        ));
        assert_eq!(h.username_bytes(), Some(&b""[..]));
        assert_eq!(h.groupname_bytes(), Some(&b""[..]));
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
    }
    use tar::EntryType::{Directory, Regular, Symlink};
    let t = 1_700_000_000;
    assert_eq!(
        got,
        vec![
            ("app/".to_string(), Directory, 0o1777, t, None, 0),
            ("app/bin/".to_string(), Directory, 0o755, t, None, 0),
            ("app/bin/.wh..wh..opq".to_string(), Regular, 0, 0, None, 0),
            ("app/bin/tool".to_string(), Regular, 0o4755, t, None, 18),
            ("app/data.txt".to_string(), Regular, 0o644, t, None, 70_000),
            (
                "app/link".to_string(),
                Symlink,
                0o777,
                t,
                Some(b"bin/tool".to_vec()),
                0
            ),
            ("etc/.wh.gone".to_string(), Regular, 0, t, None, 0),
        ]
    );
}

#[test]
fn pax_records_for_long_names_large_ids_and_xattrs() {
    let dir = tempfile::tempdir().unwrap();
    let long_dir = "very-long-directory-name/".repeat(6);
    let long_file = format!("{long_dir}file.txt");
    let long_target = format!("/{long_dir}target");
    let mut writer = LayerWriter::create(dir.path(), Compression::Gzip, Some(9)).unwrap();
    let capability = vec![
        1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let meta = EntryMeta {
        xattrs: BTreeMap::from([
            ("security.capability".to_string(), capability.clone()),
            ("user.note".to_string(), b"hello".to_vec()),
        ]),
        ..EntryMeta::new(0o755, 5_000_000, 6_000_000, 42)
    };
    writer
        .append_bytes(Path::new(&long_file), b"content", &meta)
        .unwrap();
    writer
        .append_symlink(
            Path::new("short"),
            Path::new(&long_target),
            &EntryMeta::new(0o777, 0, 0, 1),
        )
        .unwrap();
    writer
        .append_hardlink(
            Path::new("hard"),
            Path::new(&long_file),
            &EntryMeta::new(0o755, 0, 0, 1),
        )
        .unwrap();
    writer
        .append_whiteout(Path::new("/var/cache/old"), &EntryMeta::default())
        .unwrap();
    writer
        .append_opaque(Path::new("/opt"), &EntryMeta::default())
        .unwrap();
    writer
        .append_fifo(Path::new("run/pipe"), &EntryMeta::new(0o600, 0, 0, 1))
        .unwrap();
    let layer = writer.finish().unwrap();

    let tar_bytes = decompress(&layer);
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    let mut entries = archive.entries().unwrap();

    let mut file = entries.next().unwrap().unwrap();
    assert_eq!(file.path().unwrap().to_str().unwrap(), long_file);
    assert_eq!(file.header().mode().unwrap(), 0o755);
    assert_eq!(file.header().mtime().unwrap(), 42);
    let pax: Vec<(String, Vec<u8>)> = file
        .pax_extensions()
        .unwrap()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.key().unwrap().to_string(), e.value_bytes().to_vec())
        })
        .collect();
    assert_eq!(
        pax,
        vec![
            ("path".to_string(), long_file.as_bytes().to_vec()),
            ("uid".to_string(), b"5000000".to_vec()),
            ("gid".to_string(), b"6000000".to_vec()),
            ("SCHILY.xattr.security.capability".to_string(), capability),
            ("SCHILY.xattr.user.note".to_string(), b"hello".to_vec()),
        ]
    );
    let mut content = String::new();
    file.read_to_string(&mut content).unwrap();
    assert_eq!(content, "content");
    drop(file);

    let link = entries.next().unwrap().unwrap();
    assert_eq!(link.header().entry_type(), tar::EntryType::Symlink);
    assert_eq!(link.path().unwrap().to_str(), Some("short"));
    assert_eq!(
        link.link_name().unwrap().unwrap().to_str().unwrap(),
        long_target
    );
    drop(link);

    let hard = entries.next().unwrap().unwrap();
    assert_eq!(hard.header().entry_type(), tar::EntryType::Link);
    assert_eq!(
        hard.link_name().unwrap().unwrap().to_str().unwrap(),
        long_file
    );
    drop(hard);

    let rest: Vec<(String, tar::EntryType)> = entries
        .map(|e| {
            let e = e.unwrap();
            (
                e.path().unwrap().to_str().unwrap().to_string(),
                e.header().entry_type(),
            )
        })
        .collect();
    assert_eq!(
        rest,
        vec![
            ("var/cache/.wh.old".to_string(), tar::EntryType::Regular),
            ("opt/.wh..wh..opq".to_string(), tar::EntryType::Regular),
            ("run/pipe".to_string(), tar::EntryType::Fifo),
        ]
    );
}

#[test]
fn large_file_streams_and_missing_source_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big");
    // 6 MiB of incompressible-ish data, written and read in chunks.
    let chunk: Vec<u8> = (0..1_048_576u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    {
        use std::io::Write;
        let mut f = fs::File::create(&big).unwrap();
        for _ in 0..6 {
            f.write_all(&chunk).unwrap();
        }
    }
    let mut writer = LayerWriter::create(dir.path(), Compression::Zstd, None).unwrap();
    writer
        .append_file(Path::new("big"), &big, &EntryMeta::new(0o644, 0, 0, 0))
        .unwrap();
    let missing = dir.path().join("missing");
    let err = writer
        .append_file(Path::new("x"), &missing, &EntryMeta::default())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot read {} for layer entry x: No such file or directory (os error 2)",
            missing.display()
        )
    );
    let layer = writer.finish().unwrap();
    let tar_bytes = decompress(&layer);
    assert_eq!(layer.diff_id, sha256_digest(&tar_bytes));
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(entry.header().size().unwrap(), 6 * 1_048_576);
    let mut content = Vec::new();
    entry.read_to_end(&mut content).unwrap();
    assert_eq!(
        sha256_digest(&content),
        sha256_digest(&fs::read(&big).unwrap())
    );
}

#[test]
fn hundred_thousand_entries() {
    let dir = tempfile::tempdir().unwrap();
    let mut plan = LayerPlan::new();
    // Pushed in reverse so the plan has to sort them.
    for i in (0..100_000u32).rev() {
        let path = PathBuf::from(format!("d{:03}/e{:05}", i % 1000, i));
        plan.push(
            &path,
            EntryKind::Symlink {
                target: PathBuf::from("/x"),
            },
            EntryMeta::new(0o777, 0, 0, 0),
        )
        .unwrap();
    }
    for d in 0..1000u32 {
        plan.push(
            Path::new(&format!("d{d:03}")),
            EntryKind::Dir,
            EntryMeta::new(0o755, 0, 0, 0),
        )
        .unwrap();
    }
    assert_eq!(plan.len(), 101_000);
    assert!(std::mem::size_of::<kiln_builder::image::layer::PlannedEntry>() <= 160);
    let layer = write(plan, dir.path(), Compression::Zstd, Timestamps::Keep);
    let tar_bytes = decompress(&layer);
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    let names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 101_000);
    assert_eq!(names[0], "d000/");
    assert_eq!(names[1], "d000/e00000");
    assert_eq!(names[2], "d000/e01000");
    assert_eq!(names[101], "d001/");
    assert_eq!(names[100_999], "d999/e99999");
}
