//! rpm's sqlite database (`rpmdb.sqlite`, rpm >= 4.16: Fedora 33+, RHEL 9,
//! UBI 9, Amazon Linux 2023), read without rpm: the `Packages` table holds
//! one header blob per installed package, parsed by [`header`].
//!
//! The database is a copy in our scratch directory, opened read-only and
//! `immutable` (no lock, no journal, no `-wal` file read or written), with
//! sqlite's defensive mode on and the schema untrusted: a hostile file can
//! make the query fail but cannot make it write or run its own functions.
//! `Packages` must be a table (a view could compute forever).
//!
//! rpm checkpoints its write-ahead log when it closes the database, so
//! the `rpmdb.sqlite-wal` an image ships is empty (rpm 4.18 leaves a
//! 0-byte one) and is not read. Checked against a database written by
//! rpm 4.18 (`rpm --initdb`, `rpm -i --justdb`): NAME, EPOCH, VERSION,
//! RELEASE and ARCH as `rpm -qa` prints them.
//!
//! Not read: the Berkeley DB `Packages` of RHEL <= 8 and SUSE's `Packages.db`
//! (ndb); the SBOM lists those files as skipped.

pub mod header;

use std::path::Path;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};

use super::package::{Ecosystem, Package};

#[derive(Debug, thiserror::Error)]
pub enum RpmError {
    #[error("cannot name {path} as an sqlite URI")]
    Uri { path: String },
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("no Packages table")]
    NoPackagesTable,
    #[error("package header {hnum}")]
    Header {
        hnum: i64,
        #[source]
        source: header::HeaderError,
    },
    #[error("package header {hnum} is more than {limit} bytes")]
    HeaderTooLarge { hnum: i64, limit: u32 },
}

/// What one database gave: the packages of the readable headers, and why
/// each other header was not read.
#[derive(Debug, Default)]
pub struct RpmPackages {
    pub packages: Vec<Package>,
    pub bad_headers: Vec<RpmError>,
    /// Size of the largest header blob read into memory.
    pub largest_header: u64,
}

/// Reads the database file at `path` (our copy); `location` is its path
/// in the image.
pub fn read_sqlite(path: &Path, location: &str) -> Result<RpmPackages, RpmError> {
    let uri = url::Url::from_file_path(path).map_err(|()| RpmError::Uri {
        path: path.display().to_string(),
    })?;
    let connection = Connection::open_with_flags(
        format!("{uri}?immutable=1"),
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    connection.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
    let is_table: bool = connection.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'Packages'",
        [],
        |row| row.get(0),
    )?;
    if !is_table {
        return Err(RpmError::NoPackagesTable);
    }
    // A blob over the limit is never loaded: its row comes back NULL.
    let mut statement = connection.prepare(
        "SELECT hnum, CASE WHEN length(blob) <= ?1 THEN blob END FROM Packages ORDER BY hnum",
    )?;
    let limit = header::MAX_DATA;
    let mut rows = statement.query([limit])?;
    let mut out = RpmPackages::default();
    while let Some(row) = rows.next()? {
        let hnum: i64 = row.get(0)?;
        let Some(blob) = row.get::<_, Option<Vec<u8>>>(1)? else {
            out.bad_headers
                .push(RpmError::HeaderTooLarge { hnum, limit });
            continue;
        };
        out.largest_header = out.largest_header.max(blob.len() as u64);
        match header::parse(&blob) {
            Ok(info) => out.packages.push(package(info, location)),
            Err(source) => out.bad_headers.push(RpmError::Header { hnum, source }),
        }
    }
    Ok(out)
}

fn package(info: header::HeaderInfo, location: &str) -> Package {
    let mut package = Package::new(Ecosystem::Rpm, &info.name, location);
    package.version = Some(format!("{}-{}", info.version, info.release));
    package.epoch = info.epoch;
    // Source rpms and `gpg-pubkey` entries have no architecture; rpm says
    // `(none)` for them.
    package.arch = info.arch.filter(|a| !a.is_empty() && a != "(none)");
    package.license = info.license.filter(|l| !l.is_empty());
    package.source = info.source_rpm.filter(|s| !s.is_empty());
    package
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// An rpmdb.sqlite with rpm's schema and the given header blobs.
    pub(crate) fn database(path: &Path, blobs: &[Vec<u8>]) {
        let connection = Connection::open(path).unwrap();
        connection
            .execute_batch(
                "CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL);
                 CREATE TABLE Name (key TEXT NOT NULL, hnum INTEGER NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY(key, hnum, idx)) WITHOUT ROWID;",
            )
            .unwrap();
        for blob in blobs {
            connection
                .execute("INSERT INTO Packages (blob) VALUES (?1)", [blob])
                .unwrap();
        }
    }

    #[test]
    fn reads_packages_and_reports_bad_headers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rpmdb.sqlite");
        let bash = header::build(
            &[
                (1000, 6, b"bash"),
                (1001, 6, b"5.2.26"),
                (1002, 6, b"3.fc40"),
                (1022, 6, b"x86_64"),
                (1014, 6, b"GPL-3.0-or-later"),
            ],
            &[],
        );
        let key = header::build(
            &[
                (1000, 6, b"gpg-pubkey"),
                (1001, 6, b"a15b79cc"),
                (1002, 6, b"63d04c2c"),
            ],
            &[],
        );
        database(&path, &[bash, vec![0, 0, 0, 1], key]);
        let got = read_sqlite(&path, "var/lib/rpm/rpmdb.sqlite").unwrap();
        let summary: Vec<_> = got
            .packages
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_deref(), p.arch.as_deref()))
            .collect();
        assert_eq!(
            summary,
            [
                ("bash", Some("5.2.26-3.fc40"), Some("x86_64")),
                ("gpg-pubkey", Some("a15b79cc-63d04c2c"), None),
            ]
        );
        assert_eq!(got.bad_headers.len(), 1);
        assert_eq!(got.bad_headers[0].to_string(), "package header 2");
        assert_eq!(
            crate::sbom::error::chain(&got.bad_headers[0]),
            "package header 2: header is 4 bytes, shorter than its 8-byte preamble"
        );
    }

    #[test]
    fn not_an_rpm_database() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.sqlite");
        std::fs::write(
            &garbage,
            b"SQLite format 3\0 but then nothing useful at all",
        )
        .unwrap();
        let err = read_sqlite(&garbage, "x").unwrap_err();
        assert!(matches!(err, RpmError::Sqlite(_)), "{err:?}");

        let other = dir.path().join("other.sqlite");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE VIEW Packages AS SELECT 1 AS hnum, x'00' AS blob;")
            .unwrap();
        assert!(matches!(
            read_sqlite(&other, "x").unwrap_err(),
            RpmError::NoPackagesTable
        ));
    }
}
