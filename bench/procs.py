"""Processes the bench starts, /proc readings, and cleanup that runs even on failure."""

import os
import signal
import socket
import subprocess
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


class Registry:
    """Every process the bench starts; `cleanup` ends them all, by pid.

    Children of the proxies are not started by the bench, so they carry a unique tag in
    their command line (`--tag <run id>`); cleanup also ends any leftover process whose
    command line holds that tag.
    """

    def __init__(self, tag):
        self.tag = tag
        self.procs = []
        self.lock = threading.Lock()

    def add(self, proc):
        with self.lock:
            self.procs.append(proc)
        return proc

    def popen(self, argv, **kw):
        return self.add(subprocess.Popen(argv, **kw))

    def stop(self, proc, grace=5.0):
        """SIGTERM, then SIGKILL after `grace` seconds."""
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            except ProcessLookupError:
                pass

    def cleanup(self):
        with self.lock:
            procs = list(self.procs)
        for proc in procs:
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 5
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                try:
                    proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    pass
        # Children the proxies started and did not stop.
        for _ in range(2):
            leftovers = tagged_pids(self.tag)
            for pid in leftovers:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if not leftovers:
                break
            time.sleep(0.2)
        return tagged_pids(self.tag)


def tagged_pids(tag):
    """Processes whose command line holds `tag` as one argument (never this process)."""
    found = []
    needle = tag.encode()
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if needle in args:
            found.append(int(entry))
    return found


# --------------------------------------------------------------------------------------------
# /proc


def _stat_fields(pid):
    with open("/proc/%d/stat" % pid, "rb") as f:
        data = f.read()
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    return data[data.rindex(b")") + 2 :].split()


def cpu_seconds(pid):
    """utime + stime of the whole process (all its threads), in seconds."""
    fields = _stat_fields(pid)
    # Fields 14 and 15 of stat(5); index 0 here is field 3 (state).
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def system_seconds(pid):
    """stime alone: the time the kernel spent on the process's behalf (its syscalls), in seconds."""
    return int(_stat_fields(pid)[12]) / CLK_TCK


def parent_pid(pid):
    return int(_stat_fields(pid)[1])


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def hwm_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def ctx_switches(pid):
    """Voluntary + involuntary context switches, summed over the live threads of `pid`."""
    total = 0
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return 0
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


def system_cpu():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return total - idle, total


def busy_fraction(seconds=1.0):
    """How busy the machine is (0..1 of all CPUs) over `seconds`, while the bench waits."""
    b0, t0 = system_cpu()
    time.sleep(seconds)
    b1, t1 = system_cpu()
    return (b1 - b0) / max(t1 - t0, 1)


def descendants(pid):
    """Every live descendant of `pid`."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = parent_pid(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        kids = [child for child, parent in parents.items() if parent == current]
        found.extend(kids)
        frontier.extend(kids)
    return found


def cpu_of(pids):
    """{pid: cpu seconds} for the pids still alive."""
    out = {}
    for pid in pids:
        try:
            out[pid] = cpu_seconds(pid)
        except (OSError, ValueError, IndexError):
            pass
    return out


def cpu_delta(before, after):
    """CPU used between two cpu_of snapshots, over the pids present in both."""
    return sum(after[pid] - before[pid] for pid in after if pid in before)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http_ready(host, port, path, timeout, proc=None):
    """Polls `GET path` until any HTTP answer; returns seconds waited."""
    start = time.perf_counter()
    request = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n" % (path, host, port)).encode()
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("the server exited (code %s) before it was ready" % proc.returncode)
        try:
            with socket.create_connection((host, port), timeout=1) as s:
                s.sendall(request)
                if s.recv(16).startswith(b"HTTP/1."):
                    return time.perf_counter() - start
        except OSError:
            pass
        if time.perf_counter() - start > timeout:
            raise RuntimeError("not ready after %.0f s" % timeout)
        time.sleep(0.005)


class LoggedProcess:
    """A server whose stderr (and stdout) is drained by a thread into a log file.

    The thread timestamps the first line holding `ready_marker`, so a start time measured
    with it has no polling delay. Draining matters: a full stderr pipe would block the server.
    """

    def __init__(self, registry, argv, log_path, env=None, ready_marker=None):
        self.log_path = log_path
        self.ready_marker = ready_marker
        self.ready = threading.Event()
        self.ready_line = None
        self.ready_at = None
        self.t0 = time.perf_counter()
        self.proc = registry.popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
        )
        self.pid = self.proc.pid
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self):
        with open(self.log_path, "ab") as log:
            for line in self.proc.stdout:
                if self.ready_at is None and self.ready_marker and self.ready_marker in line:
                    self.ready_at = time.perf_counter()
                    self.ready_line = line.decode(errors="replace").strip()
                    self.ready.set()
                log.write(line)
            log.flush()
        self.ready.set()

    def wait_ready(self, timeout):
        """Seconds from spawn to the ready line."""
        if not self.ready.wait(timeout) or self.ready_at is None:
            raise RuntimeError(
                "no %r on the output after %.0f s (exit code %s); see %s"
                % (self.ready_marker.decode(), timeout, self.proc.poll(), self.log_path)
            )
        return self.ready_at - self.t0

    def log_tail(self, lines=15):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""
