//! User and group lookup in an image: `COPY --chown`/`ADD --chown` values
//! and the `USER` instruction, resolved against the image's own
//! `/etc/passwd` and `/etc/group` (read through in-root resolution, so an
//! image's `/etc -> /host/etc` symlink stays inside the image).
//!
//! Two rules, because Docker has two:
//! - `--chown` ([`resolve_user`]): a bare user name takes the user's
//!   primary group from passwd; a bare numeric uid takes the same number
//!   as gid, as Docker's reference says ("a UID without GID will use the
//!   same numeric UID as the GID") and kaniko does, without reading any
//!   file.
//! - `USER` ([`resolve_exec_user`]): runc's rules for the process that RUN
//!   starts: a bare uid takes its passwd entry's group when there is one
//!   and 0 otherwise, and the user's supplementary groups come from the
//!   group file.
//!
//! Numeric parts never need the files; a name that is not found is an
//! error in runc's words.

use std::fs;
use std::path::Path;

use super::FsError;
use super::in_root::{is_missing, resolve_in_root};

/// One line of `/etc/passwd`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

/// One line of `/etc/group`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// A user or group as written in a spec: a number or a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdOrName<'a> {
    Id(u32),
    Name(&'a str),
}

/// `user[:group]` split and classified, nothing looked up yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserSpec<'a> {
    pub user: IdOrName<'a>,
    pub group: Option<IdOrName<'a>>,
}

/// Who a RUN process runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, without duplicates: the groups listing the
    /// user in group-file order (only when USER names no group), then the
    /// primary group.
    pub additional_gids: Vec<u32>,
    /// The user's home directory (for `HOME`), `/` when unknown.
    pub home: String,
}

/// Parses the text of a passwd file; comments, blank and malformed lines
/// are skipped, as libc does.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 4 || fields[0].is_empty() {
                return None;
            }
            Some(PasswdEntry {
                name: fields[0].to_string(),
                uid: fields[2].trim().parse().ok()?,
                gid: fields[3].trim().parse().ok()?,
                home: fields.get(5).copied().unwrap_or("").to_string(),
                shell: fields.get(6).copied().unwrap_or("").to_string(),
            })
        })
        .collect()
}

/// Parses the text of a group file, skipping what cannot be parsed.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 3 || fields[0].is_empty() {
                return None;
            }
            Some(GroupEntry {
                name: fields[0].to_string(),
                gid: fields[2].trim().parse().ok()?,
                members: fields
                    .get(3)
                    .map(|list| {
                        list.split(',')
                            .map(str::trim)
                            .filter(|m| !m.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Splits `user`, `user:group`, `uid`, `uid:gid`, `user:gid` or
/// `uid:group`. Parts that parse as a 32-bit number are ids.
pub fn parse_user_spec(spec: &str) -> Result<UserSpec<'_>, FsError> {
    let invalid = || FsError::InvalidUserSpec {
        spec: spec.to_string(),
    };
    let (user, group) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    fn classify(part: &str) -> Option<IdOrName<'_>> {
        if part.is_empty() || part.contains(':') {
            return None;
        }
        Some(match part.parse::<u32>() {
            Ok(id) => IdOrName::Id(id),
            Err(_) => IdOrName::Name(part),
        })
    }
    Ok(UserSpec {
        user: classify(user).ok_or_else(invalid)?,
        group: match group {
            Some(group) => Some(classify(group).ok_or_else(invalid)?),
            None => None,
        },
    })
}

/// `--chown` ids from a spec and the texts of passwd and group (only
/// consulted for names).
pub fn chown_ids(spec: &str, passwd: &str, group: &str) -> Result<(u32, u32), FsError> {
    let parsed = parse_user_spec(spec)?;
    let (uid, primary_gid) = match parsed.user {
        IdOrName::Id(uid) => (uid, uid),
        IdOrName::Name(name) => {
            let users = parse_passwd(passwd);
            find_user_or_root(&users, name)?.map_or((0, 0), |entry| (entry.uid, entry.gid))
        }
    };
    let gid = match parsed.group {
        None => primary_gid,
        Some(IdOrName::Id(gid)) => gid,
        Some(IdOrName::Name(name)) => group_id(&parse_group(group), name)?,
    };
    Ok((uid, gid))
}

/// The `USER` rules (runc's) from a spec and the texts of passwd and group.
pub fn exec_user(spec: &str, passwd: &str, group: &str) -> Result<ExecUser, FsError> {
    let parsed = parse_user_spec(spec)?;
    let users = parse_passwd(passwd);
    let entry = match parsed.user {
        IdOrName::Name(name) => find_user_or_root(&users, name)?,
        IdOrName::Id(uid) => users.iter().find(|u| u.uid == uid),
    };
    let uid = match (parsed.user, entry) {
        (_, Some(entry)) => entry.uid,
        (IdOrName::Id(uid), None) => uid,
        // find_user_or_root returned an entry, or nothing for root.
        (IdOrName::Name(_), None) => 0,
    };
    let home = entry
        .map(|e| e.home.as_str())
        .filter(|h| !h.is_empty())
        .unwrap_or("/")
        .to_string();
    let groups = parse_group(group);
    let (gid, additional_gids) = match parsed.group {
        Some(IdOrName::Id(gid)) => (gid, Vec::new()),
        Some(IdOrName::Name(name)) => (group_id(&groups, name)?, Vec::new()),
        None => {
            let gid = entry.map(|e| e.gid).unwrap_or(0);
            let mut additional = Vec::new();
            if let Some(entry) = entry {
                for g in groups.iter().filter(|g| g.members.contains(&entry.name)) {
                    if !additional.contains(&g.gid) {
                        additional.push(g.gid);
                    }
                }
            }
            (gid, additional)
        }
    };
    // The primary group is a supplementary group too, as in Docker (since
    // the fix for CVE-2022-36109), containerd and buildah: otherwise a
    // process could drop it with setgroups and escape a file's
    // group-denied permissions (mode 0707).
    let mut additional_gids = additional_gids;
    if !additional_gids.contains(&gid) {
        additional_gids.push(gid);
    }
    Ok(ExecUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

/// `--chown` ids for `spec`, names looked up in `root`'s `/etc/passwd` and
/// `/etc/group`; files are only read when the spec has names.
pub fn resolve_user(root: &Path, spec: &str) -> Result<(u32, u32), FsError> {
    let parsed = parse_user_spec(spec)?;
    let passwd = match parsed.user {
        IdOrName::Name(_) => read_in_root(root, "/etc/passwd")?,
        IdOrName::Id(_) => String::new(),
    };
    let group = match parsed.group {
        Some(IdOrName::Name(_)) => read_in_root(root, "/etc/group")?,
        _ => String::new(),
    };
    chown_ids(spec, &passwd, &group)
}

/// The user a RUN process runs as for `USER spec` in the image at `root`.
pub fn resolve_exec_user(root: &Path, spec: &str) -> Result<ExecUser, FsError> {
    parse_user_spec(spec)?;
    let passwd = read_in_root(root, "/etc/passwd")?;
    let group = read_in_root(root, "/etc/group")?;
    exec_user(spec, &passwd, &group)
}

fn find_user<'a>(users: &'a [PasswdEntry], name: &str) -> Result<&'a PasswdEntry, FsError> {
    users
        .iter()
        .find(|u| u.name == name)
        .ok_or_else(|| FsError::UserNotFound {
            user: name.to_string(),
        })
}

/// `name`'s passwd entry; for `root` without one (an image with no
/// `/etc/passwd`, or one that does not list root), none: root is uid 0 and
/// gid 0 everywhere, and Docker and BuildKit fall back to 0:0 for it.
fn find_user_or_root<'a>(
    users: &'a [PasswdEntry],
    name: &str,
) -> Result<Option<&'a PasswdEntry>, FsError> {
    match find_user(users, name) {
        Ok(entry) => Ok(Some(entry)),
        Err(_) if name == "root" => Ok(None),
        Err(error) => Err(error),
    }
}

/// The gid of group `name`; `root` is 0 without a group file entry too.
fn group_id(groups: &[GroupEntry], name: &str) -> Result<u32, FsError> {
    match find_group(groups, name) {
        Ok(entry) => Ok(entry.gid),
        Err(_) if name == "root" => Ok(0),
        Err(error) => Err(error),
    }
}

fn find_group<'a>(groups: &'a [GroupEntry], name: &str) -> Result<&'a GroupEntry, FsError> {
    groups
        .iter()
        .find(|g| g.name == name)
        .ok_or_else(|| FsError::GroupNotFound {
            group: name.to_string(),
        })
}

/// A missing file reads as empty: the lookup then fails with the
/// "no matching entries" message, as runc's does.
fn read_in_root(root: &Path, path: &str) -> Result<String, FsError> {
    let host = resolve_in_root(root, path)?;
    match fs::read(&host) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(err) if is_missing(&err) => Ok(String::new()),
        Err(err) => Err(FsError::io("read", host)(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
broken:x:notanumber:1::/:/bin/sh
app:x:1000:1001:App:/home/app:/bin/sh
nohome:x:2000:2000
";
    const GROUP: &str = "\
root:x:0:
wheel:x:10:root,app
app:x:1001:
staff:x:50: app , other
bad:x:oops:
";

    #[test]
    fn parse_passwd_lines() {
        let users = parse_passwd(PASSWD);
        let names: Vec<(&str, u32, u32, &str)> = users
            .iter()
            .map(|u| (u.name.as_str(), u.uid, u.gid, u.home.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("root", 0, 0, "/root"),
                ("daemon", 1, 1, "/usr/sbin"),
                ("app", 1000, 1001, "/home/app"),
                ("nohome", 2000, 2000, ""),
            ]
        );
        assert_eq!(users[2].shell, "/bin/sh");
    }

    #[test]
    fn parse_group_lines() {
        let groups = parse_group(GROUP);
        let got: Vec<(&str, u32, Vec<&str>)> = groups
            .iter()
            .map(|g| {
                (
                    g.name.as_str(),
                    g.gid,
                    g.members.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("root", 0, vec![]),
                ("wheel", 10, vec!["root", "app"]),
                ("app", 1001, vec![]),
                ("staff", 50, vec!["app", "other"]),
            ]
        );
    }

    #[test]
    fn chown_ids_table() {
        let ok = [
            ("app", (1000, 1001)),
            ("app:staff", (1000, 50)),
            ("app:7", (1000, 7)),
            ("1000", (1000, 1000)),
            ("1234", (1234, 1234)),
            ("1234:5678", (1234, 5678)),
            ("1234:wheel", (1234, 10)),
            ("root", (0, 0)),
            ("0:0", (0, 0)),
        ];
        for (spec, want) in ok {
            assert_eq!(
                chown_ids(spec, PASSWD, GROUP).ok(),
                Some(want),
                "spec {spec:?}"
            );
        }
        let errors = [
            (
                "nobody",
                "unable to find user nobody: no matching entries in passwd file",
            ),
            (
                "broken",
                "unable to find user broken: no matching entries in passwd file",
            ),
            (
                "app:nogroup",
                "unable to find group nogroup: no matching entries in group file",
            ),
            (
                "1:nogroup",
                "unable to find group nogroup: no matching entries in group file",
            ),
            (
                "",
                "invalid user spec \"\": expected user, user:group, uid or uid:gid",
            ),
            (
                ":1",
                "invalid user spec \":1\": expected user, user:group, uid or uid:gid",
            ),
            (
                "1:",
                "invalid user spec \"1:\": expected user, user:group, uid or uid:gid",
            ),
            (
                "a:b:c",
                "invalid user spec \"a:b:c\": expected user, user:group, uid or uid:gid",
            ),
        ];
        for (spec, want) in errors {
            let got = chown_ids(spec, PASSWD, GROUP).map_err(|e| e.to_string());
            assert_eq!(got, Err(want.to_string()), "spec {spec:?}");
        }
    }

    #[test]
    fn numeric_specs_need_no_files() {
        assert_eq!(chown_ids("42:43", "", "").ok(), Some((42, 43)));
        assert_eq!(chown_ids("42", "", "").ok(), Some((42, 42)));
    }

    #[test]
    fn exec_user_table() {
        let user = |uid, gid, additional: &[u32], home: &str| ExecUser {
            uid,
            gid,
            additional_gids: additional.to_vec(),
            home: home.to_string(),
        };
        let cases = [
            ("app", user(1000, 1001, &[10, 50, 1001], "/home/app")),
            ("1000", user(1000, 1001, &[10, 50, 1001], "/home/app")),
            ("app:staff", user(1000, 50, &[50], "/home/app")),
            ("app:99", user(1000, 99, &[99], "/home/app")),
            ("4242", user(4242, 0, &[0], "/")),
            ("4242:7", user(4242, 7, &[7], "/")),
            ("nohome", user(2000, 2000, &[2000], "/")),
            ("root", user(0, 0, &[10, 0], "/root")),
        ];
        for (spec, want) in cases {
            assert_eq!(
                exec_user(spec, PASSWD, GROUP).ok(),
                Some(want),
                "spec {spec:?}"
            );
        }
        assert_eq!(
            exec_user("ghost", PASSWD, GROUP).map_err(|e| e.to_string()),
            Err("unable to find user ghost: no matching entries in passwd file".to_string())
        );
    }

    #[test]
    fn root_and_numeric_ids_need_no_passwd_file() {
        let user = |uid, gid, additional: &[u32]| ExecUser {
            uid,
            gid,
            additional_gids: additional.to_vec(),
            home: "/".to_string(),
        };
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let empty_root = dir.path();
        for (spec, want) in [
            ("root", user(0, 0, &[0])),
            ("root:root", user(0, 0, &[0])),
            ("0", user(0, 0, &[0])),
            ("1000", user(1000, 0, &[0])),
            ("1000:1000", user(1000, 1000, &[1000])),
            ("1000:root", user(1000, 0, &[0])),
        ] {
            assert_eq!(
                resolve_exec_user(empty_root, spec).ok(),
                Some(want),
                "USER {spec}"
            );
        }
        for (spec, want) in [("root", (0, 0)), ("root:root", (0, 0)), ("7", (7, 7))] {
            assert_eq!(
                resolve_user(empty_root, spec).ok(),
                Some(want),
                "--chown {spec}"
            );
        }
        // Any other name still needs its entry, in runc's words.
        assert_eq!(
            resolve_exec_user(empty_root, "app").map_err(|e| e.to_string()),
            Err("unable to find user app: no matching entries in passwd file".to_string())
        );
        assert_eq!(
            resolve_user(empty_root, "0:wheel").map_err(|e| e.to_string()),
            Err("unable to find group wheel: no matching entries in group file".to_string())
        );
    }

    #[test]
    fn parse_user_spec_classifies_parts() {
        assert_eq!(
            parse_user_spec("app:12").ok(),
            Some(UserSpec {
                user: IdOrName::Name("app"),
                group: Some(IdOrName::Id(12)),
            })
        );
        // Beyond u32: a name, which then is not found.
        assert_eq!(
            parse_user_spec("4294967296").ok(),
            Some(UserSpec {
                user: IdOrName::Name("4294967296"),
                group: None,
            })
        );
    }
}
