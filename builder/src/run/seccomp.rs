//! The seccomp filter of a sandboxed RUN: a classic-BPF program, built
//! here as plain values (pure, unit-tested) and installed by
//! `sys::install_child_setup` just before the step's user is taken.
//!
//! What it refuses is what Docker's default profile refuses a process
//! without `CAP_SYS_ADMIN`: mounting (old and new mount API), changing
//! root (`pivot_root`), entering or creating namespaces (`unshare`,
//! `setns`, `clone` with a `CLONE_NEW*` flag), loading kernels and
//! modules, the kernel keyring, BPF, perf events, `open_by_handle_at`
//! (the "shocker" escape), swap, reboot, accounting, the kernel log,
//! quotas, setting the clock, port I/O, `userfaultfd` and `io_uring`
//! (whose queued operations would bypass the filter). Refused calls
//! fail with `EPERM`; `clone3` fails with `ENOSYS`, so C libraries fall
//! back to `clone`, whose flags the filter can see (as Docker does).
//!
//! It is a deny-list, not Docker's allow-list: a system call the kernel
//! adds later is allowed. The step's capabilities are the boundary for
//! those (`sys::DEFAULT_CAPABILITIES`); the filter is a second wall in
//! front of the calls that have been escapes before. `ptrace` stays
//! allowed (as in Docker on kernels from 4.8): a step sees only its own
//! processes (PID namespace), and tracing those is what `strace` in a RUN
//! needs.
//!
//! Architectures: the native one (x86_64 also with its x32 numbers, which
//! are the x86_64 ones with bit 30 set) and, on x86_64, the i386 numbers
//! a 32-bit image runs with. A call from another architecture (an arm
//! binary on an arm64 host) is allowed: the filter cannot name its
//! numbers, and the capabilities still hold.

/// One classic-BPF instruction (`struct sock_filter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub(super) struct Instruction {
    pub(super) code: u16,
    pub(super) jt: u8,
    pub(super) jf: u8,
    pub(super) k: u32,
}

// Classic BPF opcodes (linux/bpf_common.h, linux/filter.h).
/// `BPF_LD | BPF_W | BPF_ABS` (the first two are 0).
const LD_W_ABS: u16 = 0x20;
const JMP_JEQ_K: u16 = 0x05 | 0x10;
const JMP_JSET_K: u16 = 0x05 | 0x40;
const RET_K: u16 = 0x06;
const ALU_AND_K: u16 = 0x04 | 0x50;

// Offsets in `struct seccomp_data`: nr, arch, instruction pointer, args.
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
/// Low 32 bits of `args[0]` (little-endian on every architecture here).
const OFFSET_ARG0_LOW: u32 = 16;

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// `CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |
/// CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET`. (`CLONE_NEWTIME` is in
/// `CSIGNAL`'s bits for `clone`, so only `unshare` and `clone3` take it,
/// and both are refused.)
const CLONE_NEW_FLAGS: u32 =
    0x0002_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000;

/// What the filter does with one system call number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    /// Fails with `EPERM`.
    Deny(u32),
    /// Fails with `ENOSYS` (the caller falls back to an older call).
    NotImplemented(u32),
    /// `clone`: fails with `EPERM` when its flags (first argument) ask
    /// for a new namespace.
    CloneWithoutNamespaces(u32),
}

/// A table of rules for one audit architecture.
struct ArchTable {
    audit_arch: u32,
    /// Mask applied to the number before comparing (x32's bit 30 off).
    nr_mask: u32,
    rules: Vec<Rule>,
}

/// The filter for the architecture kiln was built for.
pub(super) fn program() -> Vec<Instruction> {
    build(&tables())
}

fn build(tables: &[ArchTable]) -> Vec<Instruction> {
    let mut out = vec![stmt(LD_W_ABS, OFFSET_ARCH)];
    for table in tables {
        let section = section(table);
        // The accumulator holds the arch here: skip the section when it
        // is another one. A section is far below 256 instructions.
        let skip = u8::try_from(section.len()).unwrap_or(u8::MAX);
        out.push(jump(JMP_JEQ_K, table.audit_arch, 0, skip));
        out.extend(section);
    }
    out.push(stmt(RET_K, RET_ALLOW));
    out
}

/// Loads the number and tests it against each rule; ends in a return.
fn section(table: &ArchTable) -> Vec<Instruction> {
    let mut out = vec![stmt(LD_W_ABS, OFFSET_NR)];
    if table.nr_mask != u32::MAX {
        out.push(stmt(ALU_AND_K, table.nr_mask));
    }
    for rule in &table.rules {
        match *rule {
            Rule::Deny(nr) => {
                out.push(jump(JMP_JEQ_K, nr, 0, 1));
                out.push(stmt(RET_K, RET_ERRNO | EPERM));
            }
            Rule::NotImplemented(nr) => {
                out.push(jump(JMP_JEQ_K, nr, 0, 1));
                out.push(stmt(RET_K, RET_ERRNO | ENOSYS));
            }
            Rule::CloneWithoutNamespaces(nr) => {
                // Reloading the accumulator is fine: both branches return.
                out.push(jump(JMP_JEQ_K, nr, 0, 4));
                out.push(stmt(LD_W_ABS, OFFSET_ARG0_LOW));
                out.push(jump(JMP_JSET_K, CLONE_NEW_FLAGS, 0, 1));
                out.push(stmt(RET_K, RET_ERRNO | EPERM));
                out.push(stmt(RET_K, RET_ALLOW));
            }
        }
    }
    out.push(stmt(RET_K, RET_ALLOW));
    out
}

fn stmt(code: u16, k: u32) -> Instruction {
    Instruction {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Instruction {
    Instruction { code, jt, jf, k }
}

/// The native table: the denied calls by the numbers of the C library
/// kiln is built against.
fn native_rules() -> Vec<Rule> {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let nr = |n: libc::c_long| n as u32;
    let mut rules: Vec<Rule> = [
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_mount_setattr,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_open_by_handle_at,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_reboot,
        libc::SYS_acct,
        libc::SYS_syslog,
        libc::SYS_quotactl,
        libc::SYS_lookup_dcookie,
        libc::SYS_userfaultfd,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_clock_adjtime,
        libc::SYS_vhangup,
        // Submissions to a ring run without passing the filter again
        // (Docker and containerd stopped allowing io_uring in 2023).
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
    ]
    .into_iter()
    .map(|n| Rule::Deny(nr(n)))
    .collect();
    #[cfg(target_arch = "x86_64")]
    rules.extend(
        [libc::SYS_iopl, libc::SYS_ioperm, libc::SYS_uselib]
            .into_iter()
            .map(|n| Rule::Deny(nr(n))),
    );
    rules.push(Rule::NotImplemented(nr(libc::SYS_clone3)));
    rules.push(Rule::CloneWithoutNamespaces(nr(libc::SYS_clone)));
    rules
}

#[cfg(target_arch = "x86_64")]
fn tables() -> Vec<ArchTable> {
    vec![
        ArchTable {
            audit_arch: AUDIT_ARCH_X86_64,
            nr_mask: !X32_SYSCALL_BIT,
            rules: native_rules(),
        },
        ArchTable {
            audit_arch: AUDIT_ARCH_I386,
            nr_mask: u32::MAX,
            rules: i386_rules(),
        },
    ]
}

#[cfg(not(target_arch = "x86_64"))]
fn tables() -> Vec<ArchTable> {
    vec![ArchTable {
        audit_arch: native_audit_arch(),
        nr_mask: u32::MAX,
        rules: native_rules(),
    }]
}

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

#[cfg(not(target_arch = "x86_64"))]
fn native_audit_arch() -> u32 {
    // EM_* | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE (linux/audit.h).
    if cfg!(target_arch = "aarch64") {
        0xc000_00b7
    } else if cfg!(target_arch = "riscv64") {
        0xc000_00f3
    } else if cfg!(target_arch = "powerpc64") {
        0xc000_0015
    } else if cfg!(target_arch = "s390x") {
        0x8000_0016
    } else {
        // Unknown: a table that never matches; the capabilities remain.
        0
    }
}

/// The i386 numbers (arch/x86/entry/syscalls/syscall_32.tbl) of the same
/// calls, for 32-bit images on an x86_64 host.
#[cfg(target_arch = "x86_64")]
fn i386_rules() -> Vec<Rule> {
    let mut rules: Vec<Rule> = [
        21,  // mount
        22,  // umount
        52,  // umount2
        217, // pivot_root
        310, // unshare
        346, // setns
        430, // fsopen
        431, // fsconfig
        432, // fsmount
        433, // fspick
        429, // move_mount
        428, // open_tree
        442, // mount_setattr
        283, // kexec_load
        128, // init_module
        350, // finit_module
        129, // delete_module
        357, // bpf
        336, // perf_event_open
        342, // open_by_handle_at
        288, // keyctl
        286, // add_key
        287, // request_key
        87,  // swapon
        115, // swapoff
        88,  // reboot
        51,  // acct
        103, // syslog
        131, // quotactl
        253, // lookup_dcookie
        374, // userfaultfd
        79,  // settimeofday
        25,  // stime
        264, // clock_settime
        404, // clock_settime64
        343, // clock_adjtime
        405, // clock_adjtime64
        111, // vhangup
        110, // iopl
        101, // ioperm
        113, // vm86old
        166, // vm86
        86,  // uselib
        425, // io_uring_setup
        426, // io_uring_enter
        427, // io_uring_register
    ]
    .into_iter()
    .map(Rule::Deny)
    .collect();
    rules.push(Rule::NotImplemented(435)); // clone3
    rules.push(Rule::CloneWithoutNamespaces(120)); // clone
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic-BPF interpreter for the few opcodes [`build`] emits, to
    /// check the program's decisions without installing it.
    fn run(program: &[Instruction], arch: u32, nr: u32, arg0: u64) -> u32 {
        let data = |offset: u32| -> u32 {
            match offset {
                OFFSET_NR => nr,
                OFFSET_ARCH => arch,
                #[allow(clippy::cast_possible_truncation)]
                OFFSET_ARG0_LOW => arg0 as u32,
                other => panic!("load of offset {other}"),
            }
        };
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let ins = program[pc];
            pc += 1;
            match ins.code {
                LD_W_ABS => acc = data(ins.k),
                ALU_AND_K => acc &= ins.k,
                JMP_JEQ_K | JMP_JSET_K => {
                    let taken = if ins.code == JMP_JEQ_K {
                        acc == ins.k
                    } else {
                        acc & ins.k != 0
                    };
                    pc += usize::from(if taken { ins.jt } else { ins.jf });
                }
                RET_K => return ins.k,
                other => panic!("opcode {other:#x}"),
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn decisions_on_x86_64() {
        let program = program();
        let x86_64 = AUDIT_ARCH_X86_64;
        let i386 = AUDIT_ARCH_I386;
        let deny = RET_ERRNO | EPERM;
        let cases: [(&str, u32, u32, u64, u32); 19] = [
            ("read", x86_64, 0, 0, RET_ALLOW),
            ("execve", x86_64, 59, 0, RET_ALLOW),
            ("mount", x86_64, 165, 0, deny),
            ("umount2", x86_64, 166, 0, deny),
            ("pivot_root", x86_64, 155, 0, deny),
            ("unshare", x86_64, 272, 0, deny),
            ("mount, x32", x86_64, 165 | X32_SYSCALL_BIT, 0, deny),
            ("ptrace", x86_64, 101, 0, RET_ALLOW),
            ("clone3", x86_64, 435, 0, RET_ERRNO | ENOSYS),
            // fork as glibc does it: SIGCHLD | CLONE_CHILD_SETTID | ...
            ("clone for fork", x86_64, 56, 0x0120_0011, RET_ALLOW),
            ("clone for a thread", x86_64, 56, 0x003d_0f00, RET_ALLOW),
            ("clone NEWUSER", x86_64, 56, 0x1000_0011, deny),
            ("clone NEWNS", x86_64, 56, 0x0002_0011, deny),
            ("io_uring_setup", x86_64, 425, 0, deny),
            ("io_uring_enter", x86_64, 426, 0, deny),
            ("io_uring_setup, i386", i386, 425, 0, deny),
            ("mount, i386", i386, 21, 0, deny),
            ("read, i386", i386, 3, 0, RET_ALLOW),
            ("mount, other arch", 0xc000_00b7, 40, 0, RET_ALLOW),
        ];
        for (what, arch, nr, arg0, want) in cases {
            assert_eq!(run(&program, arch, nr, arg0), want, "{what}");
        }
    }

    #[test]
    fn every_denied_call_is_denied_and_jumps_stay_in_the_program() {
        for table in tables() {
            let program = build(std::slice::from_ref(&table));
            for rule in &table.rules {
                let (nr, want) = match *rule {
                    Rule::Deny(nr) => (nr, RET_ERRNO | EPERM),
                    Rule::NotImplemented(nr) => (nr, RET_ERRNO | ENOSYS),
                    Rule::CloneWithoutNamespaces(nr) => (nr, RET_ALLOW),
                };
                assert_eq!(run(&program, table.audit_arch, nr, 0), want, "nr {nr}");
            }
            for (i, ins) in program.iter().enumerate() {
                if ins.code & 0x07 == 0x05 {
                    let far = i + 1 + usize::from(ins.jt.max(ins.jf));
                    assert!(far < program.len(), "jump at {i} leaves the program");
                }
            }
        }
    }
}
