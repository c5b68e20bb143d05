//! `COPY --chmod`/`ADD --chmod`: octal permission bits (`755`), or
//! chmod(1)'s symbolic clauses (`u=rwX,go=rX`, `a-w`, `+x`) applied to each
//! copied entry's own mode, as BuildKit does. Without a "who", a clause
//! applies to all of user, group and other; there is no umask in a build.

/// A parsed `--chmod` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Chmod {
    /// Every entry gets these bits.
    Bits(u32),
    /// Every entry's mode is changed clause by clause.
    Symbolic(Vec<Clause>),
}

/// One `who op perms` action of a symbolic mode (`go+rX` is one clause;
/// `u+r-w` is two, sharing their "who").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clause {
    /// The mode bits the clause may touch: the classes named, with their
    /// setuid/setgid/sticky bit.
    who: u32,
    op: Op,
    perms: Perms,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Add,
    Remove,
    Set,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Perms {
    /// `r`, `w`, `x`, `s`, `t` as bits in every class (masked by "who"
    /// when applied), and whether `X` was given.
    Bits { bits: u32, conditional_x: bool },
    /// `u`, `g` or `o`: the permissions that class has now (shift to the
    /// "other" position).
    CopyOf { shift: u32 },
}

const USER: u32 = 0o4700;
const GROUP: u32 = 0o2070;
const OTHER: u32 = 0o1007;
const ALL: u32 = USER | GROUP | OTHER;

/// Why a `--chmod` value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid --chmod value {value:?}: expected octal permission bits such as 755, or symbolic modes such as u=rwX,go=rX"
)]
pub struct ChmodError {
    value: String,
}

impl Chmod {
    pub fn parse(value: &str) -> Result<Chmod, ChmodError> {
        let invalid = || ChmodError {
            value: value.to_string(),
        };
        if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            return u32::from_str_radix(value, 8)
                .ok()
                .filter(|mode| *mode <= 0o7777)
                .map(Chmod::Bits)
                .ok_or_else(invalid);
        }
        let mut clauses = Vec::new();
        for part in value.split(',') {
            parse_clause(part, &mut clauses).ok_or_else(invalid)?;
        }
        Ok(Chmod::Symbolic(clauses))
    }

    /// The permission bits an entry of `mode` (its type bits are ignored)
    /// gets; `is_dir` decides what `X` means.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            Chmod::Bits(bits) => *bits,
            Chmod::Symbolic(clauses) => clauses
                .iter()
                .fold(mode & 0o7777, |mode, clause| clause.apply(mode, is_dir)),
        }
    }
}

impl Clause {
    fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let bits = match self.perms {
            Perms::Bits {
                bits,
                conditional_x,
            } => {
                // X: execute for directories, and for files that some
                // class may execute already.
                let x = if conditional_x && (is_dir || mode & 0o111 != 0) {
                    0o111
                } else {
                    0
                };
                bits | x
            }
            Perms::CopyOf { shift } => {
                let class = (mode >> shift) & 0o7;
                class | (class << 3) | (class << 6)
            }
        };
        let bits = bits & self.who;
        match self.op {
            Op::Add => mode | bits,
            Op::Remove => mode & !bits,
            Op::Set => (mode & !self.who) | bits,
        }
    }
}

/// Parses one comma-separated part, `[ugoa]*([-+=]([rwxXst]*|[ugo]))+`,
/// into `clauses`; None when it does not have that shape.
fn parse_clause(part: &str, clauses: &mut Vec<Clause>) -> Option<()> {
    let mut chars = part.chars().peekable();
    let mut who = 0;
    while let Some(&c) = chars.peek() {
        who |= match c {
            'u' => USER,
            'g' => GROUP,
            'o' => OTHER,
            'a' => ALL,
            _ => break,
        };
        chars.next();
    }
    if who == 0 {
        who = ALL;
    }
    let mut actions = 0;
    while let Some(c) = chars.next() {
        let op = match c {
            '+' => Op::Add,
            '-' => Op::Remove,
            '=' => Op::Set,
            _ => return None,
        };
        let copy = match chars.peek() {
            Some('u') => Some(6),
            Some('g') => Some(3),
            Some('o') => Some(0),
            _ => None,
        };
        let perms = if let Some(shift) = copy {
            chars.next();
            Perms::CopyOf { shift }
        } else {
            let mut bits = 0;
            let mut conditional_x = false;
            while let Some(&c) = chars.peek() {
                match c {
                    'r' => bits |= 0o444,
                    'w' => bits |= 0o222,
                    'x' => bits |= 0o111,
                    'X' => conditional_x = true,
                    's' => bits |= 0o6000,
                    't' => bits |= 0o1000,
                    _ => break,
                }
                chars.next();
            }
            Perms::Bits {
                bits,
                conditional_x,
            }
        };
        clauses.push(Clause { who, op, perms });
        actions += 1;
    }
    (actions > 0).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_values() {
        for (text, want) in [("755", 0o755), ("0644", 0o644), ("4755", 0o4755), ("0", 0)] {
            assert_eq!(Chmod::parse(text), Ok(Chmod::Bits(want)), "{text}");
            assert_eq!(Chmod::parse(text).map(|c| c.apply(0o600, false)), Ok(want));
        }
    }

    #[test]
    fn refused_values_say_what_is_expected() {
        for text in [
            "", "17777", "9", "0o755", "u+q", "z=r", "u", "u+r,", ",u+r", "+uw", "u r",
        ] {
            assert_eq!(
                Chmod::parse(text).map_err(|e| e.to_string()),
                Err(format!(
                    "invalid --chmod value {text:?}: expected octal permission bits such as 755, or symbolic modes such as u=rwX,go=rX"
                )),
                "{text}"
            );
        }
    }

    /// (value, entry mode, is a directory, resulting bits), checked
    /// against GNU chmod with umask 0 and an explicit "a" where the value
    /// names no class.
    #[test]
    fn symbolic_modes_change_each_entry_s_own_bits() {
        let table: &[(&str, u32, bool, u32)] = &[
            ("u=rwX,go=rX", 0o600, false, 0o644),
            ("u=rwX,go=rX", 0o700, false, 0o755),
            ("u=rwX,go=rX", 0o700, true, 0o755),
            ("u=rwX,go=rX", 0o600, true, 0o755),
            ("go=u", 0o640, false, 0o666),
            ("go=u", 0o750, true, 0o777),
            ("a-w", 0o664, false, 0o444),
            ("a-w", 0o4755, false, 0o4555),
            ("-w", 0o777, true, 0o555),
            ("+x", 0o644, false, 0o755),
            ("u+x,g-r", 0o644, false, 0o704),
            ("u+r-w", 0o200, false, 0o400),
            ("o=", 0o777, false, 0o770),
            ("u+s", 0o755, false, 0o4755),
            ("g+s", 0o755, true, 0o2755),
            ("+t", 0o777, true, 0o1777),
            ("u=rw,g=r,o=", 0o777, false, 0o640),
            ("g=o", 0o705, false, 0o755),
            ("ug+X", 0o644, false, 0o644),
            ("a+X", 0o744, false, 0o755),
        ];
        for (value, mode, is_dir, want) in table {
            let chmod = Chmod::parse(value).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                chmod.apply(*mode, *is_dir),
                *want,
                "{value} on {mode:o} (dir: {is_dir}): got {:o}",
                chmod.apply(*mode, *is_dir)
            );
        }
    }
}
