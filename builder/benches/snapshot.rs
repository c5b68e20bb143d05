//! Snapshot speed on a 100,000-file tree, against `find -newer` as the
//! peer, run in the same process on the same (warm) tree.
//!
//! `cargo bench -p kiln-builder --bench snapshot` (KILN_BENCH_FILES changes
//! the file count). Prints the time to record the tree (`new`), to take a
//! snapshot after 10 files were modified (`take`, each mode) and with
//! nothing changed, the memory the record holds, and the ratio of `take`
//! to `find <tree> -newer <marker>` (which only lists what changed: no
//! hard links, deletions, modes or layer plan).

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kiln_builder::snapshot::{SnapshotMode, Snapshotter};

const DIRS: usize = 100;
const SUBDIRS: usize = 10;
const ROUNDS: usize = 5;
const MODIFIED: usize = 10;

fn main() -> Result<(), Box<dyn Error>> {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this
    // binary without it, as a quick smoke run on a small tree.
    let full = std::env::args().any(|a| a == "--bench");
    let files: usize = std::env::var("KILN_BENCH_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 100_000 } else { 1_000 });
    let per_dir = files.div_ceil(DIRS * SUBDIRS);
    let work = tempfile::tempdir()?;
    let root = work.path().join("root");
    let started = Instant::now();
    let mut paths = Vec::with_capacity(files);
    for d in 0..DIRS {
        for s in 0..SUBDIRS {
            let dir = root.join(format!("usr{d:03}/lib{s}"));
            fs::create_dir_all(&dir)?;
            for f in 0..per_dir {
                if paths.len() == files {
                    break;
                }
                let path = dir.join(format!("file{f:04}.so"));
                fs::write(&path, format!("content of {d} {s} {f}\n"))?;
                paths.push(path);
            }
        }
    }
    println!(
        "tree: {} files in {} directories, written in {:.2} s",
        paths.len(),
        DIRS * SUBDIRS + DIRS,
        started.elapsed().as_secs_f64()
    );
    // As after an unpack a while ago: nothing racily clean.
    std::thread::sleep(Duration::from_millis(100));

    let mut new_times = Vec::new();
    let mut snap = None;
    for _ in 0..3 {
        let started = Instant::now();
        snap = Some(Snapshotter::new(&root, &[])?);
        new_times.push(started.elapsed());
    }
    let mut snap = snap.ok_or("no snapshotter")?;
    println!(
        "new(): median {:.1} ms ({} entries, {:.1} MiB recorded, {} bytes per entry)",
        ms(median(&mut new_times)),
        snap.entries(),
        snap.recorded_bytes() as f64 / (1024.0 * 1024.0),
        snap.recorded_bytes() / snap.entries().max(1)
    );

    let mut idle = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let plan = snap.take(SnapshotMode::Full)?;
        idle.push(started.elapsed());
        if plan.is_some() {
            return Err("a snapshot of an unchanged tree found changes".into());
        }
    }
    println!(
        "take() with nothing changed: median {:.1} ms",
        ms(median(&mut idle))
    );

    let marker = work.path().join("marker");
    let mut round = 0;
    for mode in [SnapshotMode::Full, SnapshotMode::Redo, SnapshotMode::Time] {
        let mut takes = Vec::new();
        let mut finds = Vec::new();
        for _ in 0..ROUNDS {
            round += 1;
            fs::write(&marker, b"")?;
            // find -newer compares mtimes strictly.
            std::thread::sleep(Duration::from_millis(20));
            let step = paths.len() / MODIFIED;
            for k in 0..MODIFIED {
                let path = &paths[(k * step + round * 7) % paths.len()];
                fs::write(path, format!("modified in round {round}\n"))?;
            }
            let started = Instant::now();
            let plan = snap.take(mode)?;
            takes.push(started.elapsed());
            let entries = plan.map(|p| p.len()).unwrap_or(0);
            // 10 files, their directories and the directories above.
            if entries < MODIFIED {
                return Err(format!("{mode:?} snapshot found {entries} entries").into());
            }
            let started = Instant::now();
            let found = find_newer(&root, &marker)?;
            finds.push(started.elapsed());
            if found != MODIFIED {
                return Err(format!("find -newer listed {found} paths").into());
            }
        }
        let take = median(&mut takes);
        let find = median(&mut finds);
        println!(
            "take({mode:?}) after {MODIFIED} modified files: median {:.1} ms; find -newer: median {:.1} ms; ratio take/find {:.2}",
            ms(take),
            ms(find),
            take.as_secs_f64() / find.as_secs_f64()
        );
    }
    Ok(())
}

/// Paths `find` lists as newer than `marker` (files only).
fn find_newer(root: &Path, marker: &PathBuf) -> Result<usize, Box<dyn Error>> {
    let output = Command::new("find")
        .arg(root)
        .args(["-type", "f", "-newer"])
        .arg(marker)
        .output()?;
    if !output.status.success() {
        return Err(format!("find failed: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    Ok(output
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count())
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
