//! Root filesystems: unpacking layers, snapshots, whiteouts.
