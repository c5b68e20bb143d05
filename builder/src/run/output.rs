//! The running command: its output streamed to the caller as it arrives,
//! a tail kept for the error message, its exit status, and the killing of
//! whatever it left running.

use std::io::PipeReader;
use std::io::{self, Read};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};

/// How much of the output [`Tail`] keeps.
pub(super) const TAIL_BYTES: usize = 64 * 1024;

/// After the command exited and its process group was killed, how long
/// the output pipe may stay open (held by a process that left the group
/// and, without a PID namespace, survives) before kiln stops reading.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// Without a pidfd (kernels before 5.3), how often the command's state is
/// checked while its output is quiet.
const EXIT_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// The last `limit` bytes of a stream.
#[derive(Debug)]
pub(super) struct Tail {
    buf: Vec<u8>,
    limit: usize,
}

impl Tail {
    pub(super) fn new(limit: usize) -> Tail {
        Tail {
            buf: Vec::new(),
            limit,
        }
    }

    pub(super) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        // Trim only past twice the limit, so each byte is moved O(1) times.
        if self.buf.len() > 2 * self.limit {
            let excess = self.buf.len() - self.limit;
            self.buf.drain(..excess);
        }
    }

    /// The kept bytes as text; a character cut in half at the start is
    /// dropped, other invalid UTF-8 becomes U+FFFD.
    pub(super) fn into_string(self) -> String {
        let start = self.buf.len().saturating_sub(self.limit);
        let mut tail = &self.buf[start..];
        if start > 0 {
            let skip = tail
                .iter()
                .take(3)
                .take_while(|b| (**b & 0xC0) == 0x80)
                .count();
            tail = &tail[skip..];
        }
        String::from_utf8_lossy(tail).into_owned()
    }
}

/// An exit status as a shell reports it: the code, or 128 + the signal.
pub(super) fn status_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        // Stopped or continued: not a final status; wait() never returns these.
        (None, None) => 128,
    }
}

/// Streams `output` to `log` until the command has exited and the pipe is
/// closed, kills the command's process group as soon as the command has
/// exited (before it is reaped, so the group id cannot have been reused),
/// and returns the exit status and the output's tail. Should reading or
/// waiting fail, the step is killed and reaped before the error returns.
pub(super) fn supervise(
    mut child: Child,
    output: PipeReader,
    log: &mut dyn FnMut(&[u8]),
) -> io::Result<(i32, String)> {
    let pid = Pid::from_child(&child);
    // Until the step is reaped: a SIGTERM of kiln kills its group.
    let _interruptible = super::interrupt::process_group(pid);
    let tail = match stream_until_exit(pid, output, log) {
        Ok(tail) => tail,
        Err(err) => {
            kill_group(pid);
            let _ = child.kill();
            let _ = child.wait();
            return Err(err);
        }
    };
    let status = child.wait()?;
    Ok((status_code(status), tail.into_string()))
}

/// The loop of [`supervise`]: returns once the command has exited (not yet
/// reaped), its group has been killed and its output has been read.
fn stream_until_exit(
    pid: Pid,
    mut output: PipeReader,
    log: &mut dyn FnMut(&[u8]),
) -> io::Result<Tail> {
    let pidfd = rustix::process::pidfd_open(pid, PidfdFlags::empty()).ok();
    let mut tail = Tail::new(TAIL_BYTES);
    let mut buf = vec![0u8; 64 * 1024];
    let mut exited_at: Option<Instant> = None;
    loop {
        let timeout = match (exited_at, &pidfd) {
            (Some(at), _) => {
                let left = DRAIN_AFTER_EXIT.saturating_sub(at.elapsed());
                if left.is_zero() {
                    tracing::warn!(
                        pid = pid.as_raw_nonzero().get(),
                        "RUN: a process outside the step's process group still holds its output open; not reading it further"
                    );
                    break;
                }
                Some(left)
            }
            (None, Some(_)) => None,
            (None, None) => Some(EXIT_CHECK_INTERVAL),
        };
        let timespec = timeout.map(|d| Timespec {
            tv_sec: d.as_secs() as _,
            tv_nsec: d.subsec_nanos() as _,
        });
        let (output_ready, exit_ready) = {
            let mut fds = vec![PollFd::new(&output, PollFlags::IN)];
            if let (None, Some(pidfd)) = (exited_at, &pidfd) {
                fds.push(PollFd::new(pidfd, PollFlags::IN));
            }
            match rustix::event::poll(&mut fds, timespec.as_ref()) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(err) => return Err(err.into()),
            }
            (
                !fds[0].revents().is_empty(),
                fds.get(1).is_some_and(|fd| !fd.revents().is_empty()),
            )
        };
        if output_ready {
            match output.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    log(&buf[..n]);
                    tail.push(&buf[..n]);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        if exited_at.is_none() && (exit_ready || pidfd.is_none()) && has_exited(pid)? {
            kill_group(pid);
            exited_at = Some(Instant::now());
        }
    }
    if exited_at.is_none() {
        // The output closed first (the command closed its stdout and goes
        // on): wait for it without reaping, then kill its group.
        rustix::process::waitid(
            WaitId::Pid(pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
        )?;
        kill_group(pid);
    }
    Ok(tail)
}

/// Whether the child has exited, leaving it waitable (a zombie).
fn has_exited(pid: Pid) -> io::Result<bool> {
    let status = rustix::process::waitid(
        WaitId::Pid(pid),
        WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT,
    )?;
    Ok(status.is_some())
}

/// SIGKILL to the command's process group (it is the group's leader). The
/// group may be empty already.
fn kill_group(pid: Pid) {
    match rustix::process::kill_process_group(pid, Signal::KILL) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => {}
        Err(err) => {
            tracing::warn!(pgid = pid.as_raw_nonzero().get(), %err, "RUN: cannot kill the step's process group")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_bytes() {
        let mut tail = Tail::new(4);
        tail.push(b"ab");
        tail.push(b"cdef");
        tail.push(b"g");
        assert_eq!(tail.into_string(), "defg");

        let mut tail = Tail::new(4);
        tail.push(b"0123456789abcdef");
        assert_eq!(tail.into_string(), "cdef");

        let mut tail = Tail::new(8);
        tail.push(b"short");
        assert_eq!(tail.into_string(), "short");
    }

    #[test]
    fn tail_drops_a_character_cut_at_the_start() {
        // "é" is C3 A9; a 3-byte limit over "xé!" cuts nothing, over "é!!" the C3.
        let mut tail = Tail::new(3);
        tail.push("aé!!".as_bytes());
        assert_eq!(tail.into_string(), "!!");
        let mut tail = Tail::new(3);
        tail.push("é!".as_bytes());
        assert_eq!(tail.into_string(), "é!");
    }

    #[test]
    fn status_codes() {
        // Raw wait statuses: exit code in the high byte, signal in the low bits.
        let cases = [
            (0, 0),
            (3 << 8, 3),
            (255 << 8, 255),
            (9, 137),
            (15, 143),
            (2 | 0x80, 130),
        ];
        for (raw, want) in cases {
            assert_eq!(status_code(ExitStatus::from_raw(raw)), want, "raw {raw:#x}");
        }
    }
}
