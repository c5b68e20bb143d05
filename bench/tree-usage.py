#!/usr/bin/env python3
"""Runs a command and measures the whole process tree it is part of.

Usage: tree-usage.py OUT [--daemon PID]... -- CMD [ARG]...

Writes "wall_s cpu_s peak_rss_kib" to OUT and exits with CMD's status
(CMD's stdout and stderr are this script's).

- wall: from starting CMD until it exited.
- cpu: user + system time of CMD and of every descendant it waited for
  (wait4's rusage, as GNU time reports it), plus what each daemon PID and
  the children it waited for used meanwhile (utime + stime + cutime +
  cstime in /proc/PID/stat, read before and after; 10 ms resolution). A
  daemon is a server the command talks to, such as buildkitd for buildctl:
  its work is the build's work.
- peak RSS: the largest sum of VmRSS (/proc/PID/statm, resident pages) over
  CMD, the daemons and all their descendants, sampled every
  KILN_BENCH_SAMPLE_MS milliseconds (default 20); at least CMD's own peak
  (wait4's ru_maxrss). Pages shared between processes (libraries, a parent's
  pages after fork) count once per process, so the sum can be above what
  the tree takes from the machine; a process that lives shorter than one
  sample can be missed.

The tree is followed by parent pid: a process belongs to it when its
parent did when it was first seen, so a daemon's RUN containers (runc and
what it starts) count, and so do processes in PID namespaces below it.
"""

import os
import subprocess
import sys
import threading
import time

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
TICKS = os.sysconf("SC_CLK_TCK")


def read_stat(pid):
    """(ppid, utime + stime + cutime + cstime in ticks), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name is in parentheses and may contain anything.
    fields = data[data.rfind(b")") + 2 :].split()
    # fields[0] is the state (field 3 of proc(5)); ppid is field 4,
    # utime..cstime are fields 14-17.
    return int(fields[1]), sum(int(x) for x in fields[11:15])


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE_KIB
    except (OSError, IndexError, ValueError):
        return 0


class Tree:
    """The processes descending from a set of root pids."""

    def __init__(self, roots):
        self.roots = set(roots)
        self.member = {}  # pid -> bool, decided when first seen

    def scan(self):
        """Updates membership from /proc; returns the member pids alive."""
        alive = set()
        ppids = {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            alive.add(pid)
            if pid not in self.member:
                stat = read_stat(pid)
                if stat is not None:
                    ppids[pid] = stat[0]
        # Forget processes that are gone, so a reused pid is decided again.
        for pid in [p for p in self.member if p not in alive]:
            del self.member[pid]

        def decide(pid, depth=0):
            if pid in self.roots:
                return True
            known = self.member.get(pid)
            if known is not None:
                return known
            ppid = ppids.get(pid)
            result = ppid is not None and depth < 64 and ppid != pid and decide(ppid, depth + 1)
            self.member[pid] = result
            return result

        for pid in ppids:
            decide(pid)
        for root in self.roots:
            if root in alive:
                self.member[root] = True
        return [p for p, m in self.member.items() if m]


def main():
    args = sys.argv[1:]
    if len(args) < 3 or "--" not in args:
        print(__doc__, file=sys.stderr)
        return 2
    out = args.pop(0)
    daemons = []
    while args and args[0] == "--daemon":
        daemons.append(int(args[1]))
        del args[:2]
    if not args or args[0] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    cmd = args[1:]
    interval = float(os.environ.get("KILN_BENCH_SAMPLE_MS", "20")) / 1000

    daemon_cpu_before = {}
    for pid in daemons:
        stat = read_stat(pid)
        if stat is None:
            print(f"tree-usage: daemon {pid} is not running", file=sys.stderr)
            return 2
        daemon_cpu_before[pid] = stat[1]

    start = time.monotonic()
    child = subprocess.Popen(cmd)
    tree = Tree([child.pid, *daemons])
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            total = sum(rss_kib(pid) for pid in tree.scan())
            peak[0] = max(peak[0], total)
            done.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    # wait4 on the child alone: its rusage covers what it waited for.
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.monotonic() - start
    done.set()
    sampler.join()
    child.returncode = os.waitstatus_to_exitcode(status)

    cpu = usage.ru_utime + usage.ru_stime
    for pid, before in daemon_cpu_before.items():
        stat = read_stat(pid)
        if stat is not None:
            cpu += (stat[1] - before) / TICKS
    peak = max(peak[0], usage.ru_maxrss)
    with open(out, "w") as f:
        f.write(f"{wall:.3f} {cpu:.3f} {peak}\n")
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
