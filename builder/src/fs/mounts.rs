//! Mount points, as the kernel lists them in `/proc/self/mountinfo`: what
//! a snapshot never captures and what emptying `/` in place never removes.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Mount points strictly below `root`, relative to it, from the text of
/// `/proc/self/mountinfo` (mount point = fifth field, with `\ooo` octal
/// escapes for space, tab, newline and backslash).
pub fn mount_points_below(mountinfo: &str, root: &Path) -> Vec<Vec<u8>> {
    let mut found = Vec::new();
    for line in mountinfo.lines() {
        let Some(field) = line.split(' ').nth(4) else {
            continue;
        };
        let raw = unescape_octal(field);
        let mount = Path::new(OsStr::from_bytes(&raw));
        if let Ok(rel) = mount.strip_prefix(root) {
            let rel = rel.as_os_str().as_bytes();
            if !rel.is_empty() && !found.iter().any(|seen: &Vec<u8>| seen == rel) {
                found.push(rel.to_vec());
            }
        }
    }
    found
}

fn unescape_octal(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_below_the_root_with_escapes() {
        let table = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 0:5 / /proc rw - proc proc rw
40 22 0:30 / /work/root/proc rw - proc proc rw
41 22 0:31 / /work/root/my\\040dir rw - tmpfs tmpfs rw
42 22 0:32 / /work/root rw - tmpfs tmpfs rw
43 22 0:33 / /work/rootfs/x rw - tmpfs tmpfs rw
44 22 8:1 /etc/hosts /work/root/etc/hosts rw - ext4 /dev/sda1 rw
45 22 0:30 / /work/root/proc rw - proc proc rw
short line
";
        let got = mount_points_below(table, Path::new("/work/root"));
        let want: Vec<Vec<u8>> = vec![b"proc".to_vec(), b"my dir".to_vec(), b"etc/hosts".to_vec()];
        assert_eq!(got, want);
    }

    #[test]
    fn octal_escapes() {
        let cases: [(&str, &[u8]); 5] = [
            ("a\\040b", b"a b"),
            ("tab\\011", b"tab\t"),
            ("back\\134slash", b"back\\slash"),
            ("not\\09", b"not\\09"),
            ("end\\04", b"end\\04"),
        ];
        for (field, want) in cases {
            assert_eq!(unescape_octal(field), want, "{field}");
        }
    }
}
