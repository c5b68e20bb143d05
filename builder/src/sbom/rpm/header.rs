//! rpm's header structure, as rpm stores one per package in its database
//! (`headerExport`'s blob: no lead, no magic):
//!
//! ```text
//! il: u32 BE    number of index entries
//! dl: u32 BE    length of the data store
//! il × { tag: u32, type: u32, offset: u32, count: u32 }   (big-endian)
//! dl bytes of data; a STRING is NUL-terminated at `offset`, an INT32 is
//! four big-endian bytes at `offset`, an I18NSTRING is `count` strings
//! ```
//!
//! Untrusted input: every count and offset is checked against the blob
//! before use, and nothing is allocated from a count.

use std::fmt;

/// rpm's own limits (`hdrchkTags`, `hdrchkData`) are 0xffff entries and
/// 256 MiB of data; a real header has a few hundred entries and well under
/// a megabyte, so we stop earlier.
pub const MAX_ENTRIES: u32 = 0xffff;
pub const MAX_DATA: u32 = 16 << 20;

const ENTRY_LEN: usize = 16;

/// Tags the SBOM reads (rpmtag.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag {
    Name = 1000,
    Version = 1001,
    Release = 1002,
    Epoch = 1003,
    License = 1014,
    Arch = 1022,
    SourceRpm = 1044,
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Tag::Name => "NAME",
            Tag::Version => "VERSION",
            Tag::Release => "RELEASE",
            Tag::Epoch => "EPOCH",
            Tag::License => "LICENSE",
            Tag::Arch => "ARCH",
            Tag::SourceRpm => "SOURCERPM",
        };
        f.write_str(name)
    }
}

const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_I18NSTRING: u32 = 9;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("header is {len} bytes, shorter than its 8-byte preamble")]
    Short { len: usize },
    #[error("header has {entries} index entries (at most {MAX_ENTRIES} allowed)")]
    TooManyEntries { entries: u32 },
    #[error("header data store is {data} bytes (at most {MAX_DATA} allowed)")]
    DataTooLarge { data: u32 },
    #[error(
        "header needs {need} bytes for {entries} entries and {data} data bytes, blob has {len}"
    )]
    Truncated {
        need: usize,
        entries: u32,
        data: u32,
        len: usize,
    },
    #[error("tag {tag} has type {found}, expected {expected}")]
    WrongType {
        tag: Tag,
        found: u32,
        expected: &'static str,
    },
    #[error("tag {tag} points at offset {offset}, outside the {data}-byte data store")]
    BadOffset { tag: Tag, offset: u32, data: u32 },
    #[error("string of tag {tag} is not NUL-terminated inside the data store")]
    Unterminated { tag: Tag },
    #[error("no {0} tag")]
    Missing(Tag),
}

/// The package fields of one header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderInfo {
    pub name: String,
    pub version: String,
    pub release: String,
    pub epoch: Option<u32>,
    pub arch: Option<String>,
    pub license: Option<String>,
    pub source_rpm: Option<String>,
}

/// A header's index and data store, checked to fit the blob.
struct Header<'a> {
    index: &'a [u8],
    data: &'a [u8],
}

/// One index entry.
struct Entry {
    kind: u32,
    offset: u32,
}

impl<'a> Header<'a> {
    fn new(blob: &'a [u8]) -> Result<Header<'a>, HeaderError> {
        let (Some(il), Some(dl)) = (be_u32(blob, 0), be_u32(blob, 4)) else {
            return Err(HeaderError::Short { len: blob.len() });
        };
        if il > MAX_ENTRIES {
            return Err(HeaderError::TooManyEntries { entries: il });
        }
        if dl > MAX_DATA {
            return Err(HeaderError::DataTooLarge { data: dl });
        }
        // Both bounded above, so no overflow.
        let index_len = il as usize * ENTRY_LEN;
        let need = 8 + index_len + dl as usize;
        if blob.len() < need {
            return Err(HeaderError::Truncated {
                need,
                entries: il,
                data: dl,
                len: blob.len(),
            });
        }
        Ok(Header {
            index: &blob[8..8 + index_len],
            data: &blob[8 + index_len..need],
        })
    }

    fn entry(&self, tag: Tag) -> Option<Entry> {
        self.index.chunks_exact(ENTRY_LEN).find_map(|raw| {
            (be_u32(raw, 0)? == tag as u32).then_some(Entry {
                kind: be_u32(raw, 4)?,
                offset: be_u32(raw, 8)?,
            })
        })
    }

    /// A STRING (or the first string of an I18NSTRING / STRING_ARRAY).
    fn string(&self, tag: Tag) -> Result<Option<String>, HeaderError> {
        let Some(entry) = self.entry(tag) else {
            return Ok(None);
        };
        if !matches!(
            entry.kind,
            TYPE_STRING | TYPE_I18NSTRING | TYPE_STRING_ARRAY
        ) {
            return Err(HeaderError::WrongType {
                tag,
                found: entry.kind,
                expected: "STRING",
            });
        }
        let rest = self.at(tag, entry.offset)?;
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(HeaderError::Unterminated { tag })?;
        Ok(Some(String::from_utf8_lossy(&rest[..end]).into_owned()))
    }

    fn int32(&self, tag: Tag) -> Result<Option<u32>, HeaderError> {
        let Some(entry) = self.entry(tag) else {
            return Ok(None);
        };
        if entry.kind != TYPE_INT32 {
            return Err(HeaderError::WrongType {
                tag,
                found: entry.kind,
                expected: "INT32",
            });
        }
        let rest = self.at(tag, entry.offset)?;
        be_u32(rest, 0).map(Some).ok_or(HeaderError::BadOffset {
            tag,
            offset: entry.offset,
            data: self.data.len() as u32,
        })
    }

    fn at(&self, tag: Tag, offset: u32) -> Result<&'a [u8], HeaderError> {
        self.data
            .get(offset as usize..)
            .ok_or(HeaderError::BadOffset {
                tag,
                offset,
                data: self.data.len() as u32,
            })
    }
}

/// Reads the package fields of one header blob.
pub fn parse(blob: &[u8]) -> Result<HeaderInfo, HeaderError> {
    let header = Header::new(blob)?;
    let required = |tag| header.string(tag)?.ok_or(HeaderError::Missing(tag));
    Ok(HeaderInfo {
        name: required(Tag::Name)?,
        version: required(Tag::Version)?,
        release: required(Tag::Release)?,
        epoch: header.int32(Tag::Epoch)?,
        arch: header.string(Tag::Arch)?,
        license: header.string(Tag::License)?,
        source_rpm: header.string(Tag::SourceRpm)?,
    })
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let raw = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]))
}

/// Builds a header blob, as rpm lays one out; for tests and fuzz seeds.
#[doc(hidden)]
pub fn build(strings: &[(u32, u32, &[u8])], int32s: &[(u32, u32)]) -> Vec<u8> {
    let mut index = Vec::new();
    let mut data = Vec::new();
    for &(tag, value) in int32s {
        while data.len() % 4 != 0 {
            data.push(0);
        }
        index.push((tag, TYPE_INT32, data.len() as u32, 1u32));
        data.extend_from_slice(&value.to_be_bytes());
    }
    for &(tag, kind, value) in strings {
        index.push((tag, kind, data.len() as u32, 1u32));
        data.extend_from_slice(value);
        data.push(0);
    }
    let mut blob = Vec::new();
    blob.extend_from_slice(&(index.len() as u32).to_be_bytes());
    blob.extend_from_slice(&(data.len() as u32).to_be_bytes());
    for (tag, kind, offset, count) in index {
        for field in [tag, kind, offset, count] {
            blob.extend_from_slice(&field.to_be_bytes());
        }
    }
    blob.extend_from_slice(&data);
    blob
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn bash() -> Vec<u8> {
        build(
            &[
                (Tag::Name as u32, TYPE_STRING, b"bash"),
                (Tag::Version as u32, TYPE_STRING, b"5.2.26"),
                (Tag::Release as u32, TYPE_STRING, b"3.fc40"),
                (Tag::License as u32, TYPE_STRING, b"GPL-3.0-or-later"),
                (Tag::Arch as u32, TYPE_STRING, b"x86_64"),
                (
                    Tag::SourceRpm as u32,
                    TYPE_STRING,
                    b"bash-5.2.26-3.fc40.src.rpm",
                ),
                // An I18NSTRING summary, as real headers have.
                (1004, TYPE_I18NSTRING, b"The GNU Bourne Again shell"),
            ],
            &[(Tag::Epoch as u32, 1)],
        )
    }

    #[test]
    fn package_fields() {
        assert_eq!(
            parse(&bash()).unwrap(),
            HeaderInfo {
                name: "bash".into(),
                version: "5.2.26".into(),
                release: "3.fc40".into(),
                epoch: Some(1),
                arch: Some("x86_64".into()),
                license: Some("GPL-3.0-or-later".into()),
                source_rpm: Some("bash-5.2.26-3.fc40.src.rpm".into()),
            }
        );
    }

    #[test]
    fn corrupt_headers() {
        let good = bash();
        let mut too_many = good.clone();
        too_many[0..4].copy_from_slice(&0x10000u32.to_be_bytes());
        let mut huge_data = good.clone();
        huge_data[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        // The NAME entry's offset (first string entry, after EPOCH) moved
        // past the data store.
        let mut bad_offset = good.clone();
        let name_offset_at = 8 + ENTRY_LEN + 8;
        bad_offset[name_offset_at..name_offset_at + 4].copy_from_slice(&1_000_000u32.to_be_bytes());
        let mut unterminated = build(&[(Tag::Name as u32, TYPE_STRING, b"bash")], &[]);
        let last = unterminated.len() - 1;
        unterminated[last] = b'x';
        let no_name = build(&[(Tag::Version as u32, TYPE_STRING, b"1")], &[]);
        let wrong_type = build(&[(Tag::Name as u32, TYPE_INT32, b"abcd")], &[]);
        let data_len = (good.len() - 8 - 8 * ENTRY_LEN) as u32;
        let cases: [(&[u8], HeaderError); 8] = [
            (&good[..5], HeaderError::Short { len: 5 }),
            (&too_many, HeaderError::TooManyEntries { entries: 0x10000 }),
            (&huge_data, HeaderError::DataTooLarge { data: u32::MAX }),
            (
                &good[..good.len() - 1],
                HeaderError::Truncated {
                    need: good.len(),
                    entries: 8,
                    data: data_len,
                    len: good.len() - 1,
                },
            ),
            (
                &bad_offset,
                HeaderError::BadOffset {
                    tag: Tag::Name,
                    offset: 1_000_000,
                    data: data_len,
                },
            ),
            (&unterminated, HeaderError::Unterminated { tag: Tag::Name }),
            (&no_name, HeaderError::Missing(Tag::Name)),
            (
                &wrong_type,
                HeaderError::WrongType {
                    tag: Tag::Name,
                    found: TYPE_INT32,
                    expected: "STRING",
                },
            ),
        ];
        for (blob, want) in cases {
            assert_eq!(parse(blob).unwrap_err(), want);
        }
    }
}
