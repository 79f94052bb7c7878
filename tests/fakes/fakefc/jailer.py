# SPDX-License-Identifier: MIT
"""The fake `jailer` (docs/firecracker.md D). Everything observable is done for real (jail layout,
devices, cgroups, netns, rlimits, chroot, privilege drop, daemonize, pid file); only the final
exec is replaced by running the fake Firecracker in-process, because the jail has no Python."""
import json
import os
import resource
import stat
import sys
import time

from . import VERSION, args as argmod, knobs as knobmod, sysc, vmm as vmmmod
from .record import Recorder
from .vsock import AgentHelper

FLAGS = {
    "id": argmod.Spec(required=True), "exec-file": argmod.Spec(required=True),
    "uid": argmod.Spec(required=True), "gid": argmod.Spec(required=True),
    "chroot-base-dir": argmod.Spec(default="/srv/jailer"), "netns": argmod.Spec(),
    "daemonize": argmod.Spec(False), "new-pid-ns": argmod.Spec(False),
    "cgroup": argmod.Spec(multiple=True), "resource-limit": argmod.Spec(multiple=True),
    "cgroup-version": argmod.Spec(default="1"), "parent-cgroup": argmod.Spec(),
    "version": argmod.Spec(False), "help": argmod.Spec(False),
}
DEV_NULL = "/dev/null"
KNOBS_FILE = "fake-fc.knobs.json"      # <chroot-base>/fake-fc.knobs.json
RECORD_DIR = "fake-fc.records"         # <chroot-base>/fake-fc.records/<id>.calls.jsonl


class JailerError(Exception):
    pass


def _fail(msg):
    sys.stderr.write("%s\nError: %s\n" % (msg, msg))
    sys.stderr.flush()
    return 1


def _canonical(p):
    try:
        os.stat(p)
    except OSError as e:
        raise JailerError("Failed to canonicalize path %s: %s" % (p, sysc.io_error(e)))
    return os.path.realpath(p)


def _u32(s, what):
    if not s.isdigit() or int(s) >= 2**32:
        raise JailerError("Invalid %s: %s" % (what, s))
    return int(s)


def _parse_int_err(v):
    if v == "":
        return "cannot parse integer from empty string"
    if not v.isdigit():
        return "invalid digit found in string"
    return "number too large to fit in target type"


class Cgroups:
    """Real cgroup setup (D.2 step 7). Records every write for fake-jailer.json."""

    def __init__(self, version, parent, vm_id):
        self.version = version
        self.parent = parent
        self.id = vm_id
        self.writes = []
        self.dirs = []

    @staticmethod
    def mounts():
        out = []
        with open("/proc/mounts") as f:
            for line in f:
                p = line.split()
                if len(p) >= 4 and p[2] in ("cgroup", "cgroup2"):
                    out.append((p[2], p[1], p[3].split(",")))
        return out

    def _write(self, path, value):
        try:
            with open(path, "w") as f:
                f.write("%s\n" % value)
        except OSError as e:
            raise JailerError("Failed to write to %s: %s" % (path, sysc.io_error(e)))
        self.writes.append({"path": path, "value": str(value)})

    def _mkdirs(self, root, rel):
        d = root
        for comp in rel.split("/"):
            if not comp:
                continue
            d = os.path.join(d, comp)
            if not os.path.isdir(d):
                try:
                    os.mkdir(d)
                except FileExistsError:
                    pass
                except OSError as e:
                    raise JailerError("Failed to create directory %s: %s"
                                      % (d, sysc.io_error(e)))
                self.dirs.append(d)
        return d

    def _inherit(self, root, leaf, fname):
        """Copy the first line of the nearest non-empty ancestor file down to leaf (cpuset)."""
        chain = []
        d = leaf
        while True:
            chain.append(d)
            if d == root:
                break
            d = os.path.dirname(d)
        chain.reverse()
        for parent, child in zip(chain, chain[1:]):
            cf = os.path.join(child, fname)
            try:
                try:
                    with open(cf) as f:
                        if f.read().strip():
                            continue
                except FileNotFoundError:
                    pass        # only outside a real cgroupfs (unit tests)
                with open(os.path.join(parent, fname)) as f:
                    line = f.readline().rstrip("\n")
            except OSError as e:
                raise JailerError("Failed to inherit cgroups configurations from file %s in "
                                  "path %s" % (fname, parent)) from e
            self._write(cf, line)

    def setup(self, props, pid):
        mounts = self.mounts()
        kind = "cgroup" if self.version == 1 else "cgroup2"
        ms = [m for m in mounts if m[0] == kind]
        if self.version == 2 and not props:
            for _, mp, _ in ms[:1]:
                d = os.path.join(mp, self.parent)
                if os.path.isdir(d):
                    self._write(os.path.join(d, "cgroup.procs"), pid)
            return
        if not props:
            return
        if not ms:
            raise JailerError("Hierarchy not found: No hierarchy found for this cgroup version.")
        leafs = []
        for fname, value in props:
            ctrl = fname.split(".", 1)[0]
            if self.version == 1:
                mp = next((m[1] for m in ms if ctrl in m[2]), None)
                if mp is None:
                    raise JailerError("Controller %s is unavailable" % ctrl)
                leaf = self._mkdirs(mp, "%s/%s" % (self.parent, self.id))
                if ctrl == "cpuset":
                    for f in ("cpuset.cpus", "cpuset.mems"):
                        self._inherit(mp, leaf, f)
                self._write(os.path.join(leaf, fname), value)
                if (mp, leaf, "tasks") not in leafs:
                    leafs.append((mp, leaf, "tasks"))
            else:
                mp = ms[0][1]
                try:
                    with open(os.path.join(mp, "cgroup.controllers")) as f:
                        avail = f.read().split()
                except OSError:
                    avail = []
                if ctrl not in avail:
                    raise JailerError("Controller %s is unavailable" % ctrl)
                leaf = self._mkdirs(mp, "%s/%s" % (self.parent, self.id))
                d = mp
                for comp in [mp] + self.parent.split("/"):
                    d = os.path.join(d, comp) if comp != mp else mp
                    self._write(os.path.join(d, "cgroup.subtree_control"), "+" + ctrl)
                self._write(os.path.join(leaf, fname), value)
                if (mp, leaf, "cgroup.procs") not in leafs:
                    leafs.append((mp, leaf, "cgroup.procs"))
        for _, leaf, f in leafs:
            self._write(os.path.join(leaf, f), pid)


def _validate(vals):
    """Env::new: everything checked before touching the system."""
    vm_id = vals["id"]
    err = argmod.validate_instance_id(vm_id)
    if err:
        raise JailerError("Invalid instance ID: %s" % err)
    exec_path = _canonical(vals["exec-file"])
    if not stat.S_ISREG(os.stat(exec_path).st_mode):
        raise JailerError("%s is not a file" % exec_path)
    exec_name = os.path.basename(exec_path)
    base = _canonical(vals["chroot-base-dir"])
    if not os.path.isdir(base):
        raise JailerError("%s is not a directory" % base)
    uid = _u32(vals["uid"], "uid")
    gid = _u32(vals["gid"], "gid")
    ver = vals["cgroup-version"]
    if ver not in ("1", "2"):
        raise JailerError("%s is an invalid cgroup version specifier" % ver)
    parent = vals.get("parent-cgroup", exec_name)
    comps = parent.split("/")
    if parent.startswith("/") or any(c in (".", "..") for c in comps):
        raise JailerError("Parent cgroup path is invalid. Path should not be absolute or "
                          "contain '..' or '.'")
    props = []
    for arg in vals.get("cgroup", []):
        if "=" not in arg:
            raise JailerError("Invalid format for cgroups: %s" % arg)
        f, v = arg.split("=", 1)
        if not f or not v:
            raise JailerError("Invalid format for cgroups: %s" % arg)
        head, dot, tail = f.partition(".")
        if not dot or not head or not tail or not all(c.isalnum() or c in "_.-" for c in f):
            raise JailerError("Cgroup invalid file: %s" % arg)
        props.append((f, v))
    limits = {"no-file": 2048}
    for arg in vals.get("resource-limit", []):
        if "=" not in arg:
            raise JailerError("Invalid format for resources limits: %s" % arg)
        n, v = arg.split("=", 1)
        if n not in ("fsize", "no-file"):
            raise JailerError("Invalid resource argument: %s" % n)
        if not v.isdigit() or int(v) >= 2**64:
            raise JailerError("Invalid limit value for resource: %s: %s" % (v, _parse_int_err(v)))
        limits[n] = int(v)
    return {"id": vm_id, "exec_file": exec_path, "exec_file_name": exec_name, "base": base,
            "uid": uid, "gid": gid, "cgroup_version": int(ver), "parent_cgroup": parent,
            "cgroups": props, "rlimits": limits, "netns": vals.get("netns"),
            "daemonize": "daemonize" in vals, "new_pid_ns": "new-pid-ns" in vals}


def _copy_exec(src, dst, uid, gid):
    try:
        st = os.lstat(dst)
        if st.st_nlink > 1:
            raise JailerError("Detected hard link at: %s" % dst)
    except FileNotFoundError:
        pass
    try:
        sfd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        mode = os.fstat(sfd).st_mode & 0o7777
        dfd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        while True:
            b = os.read(sfd, 1 << 20)
            if not b:
                break
            os.write(dfd, b)
        os.fchmod(dfd, mode)
        os.close(sfd)
        os.close(dfd)
    except OSError as e:
        raise JailerError("Failed to copy %s to %s: %s" % (src, dst, sysc.io_error(e)))
    try:
        os.chown(dst, uid, gid)
    except OSError as e:
        raise JailerError("Failed to change owner for %s: %s" % (dst, sysc.io_error(e)))


def _userfaultfd_minor():
    if not os.path.exists("/dev/userfaultfd"):
        return None
    try:
        with open("/proc/misc") as f:
            for line in f:
                p = line.split()
                if len(p) == 2 and p[1] == "userfaultfd":
                    return int(p[0])
    except OSError:
        pass
    return None


def _jail_devices(uid, gid, uffd_minor):
    for d in ("/", "/dev", "/dev/net", "/run"):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            pass
        except OSError as e:
            raise JailerError("Failed to create directory %s: %s" % (d, sysc.io_error(e)))
        os.chmod(d, 0o700)
        os.chown(d, uid, gid)
    devs = [("/dev/net/tun", 10, 200), ("/dev/kvm", 10, 232), ("/dev/urandom", 1, 9)]
    if uffd_minor is not None:
        devs.append(("/dev/userfaultfd", 10, uffd_minor))
    for path, ma, mi in devs:
        try:
            os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(ma, mi))
            os.chown(path, uid, gid)
        except OSError as e:
            if path == "/dev/urandom":
                sys.stderr.write("Warning! Could not create /dev/urandom device inside jailer: "
                                 "%s\nMMDS version 2 will not be available to use.\n"
                                 % sysc.io_error(e))
                continue
            raise JailerError("Failed to create %s via mknod inside the jail: %s"
                              % (path, sysc.io_error(e)))


def main(argv):
    knobs_doc = knobmod.read_file() if os.environ.get("FAKE_FC_KNOBS") else None
    record_dir = os.environ.get("FAKE_FC_RECORD_DIR")
    orig_env = dict(os.environ)
    start_us = int(time.monotonic() * 1e6)
    start_cpu_us = int(time.process_time() * 1e6)
    try:
        sysc.close_range(3)
    except OSError:
        os.closerange(3, 4096)
    os.environ.clear()
    try:
        vals, extra = argmod.parse(FLAGS, argv[1:])
    except argmod.ArgError as e:
        return _fail("Failed to parse arguments: %s" % e)
    if "help" in vals or "version" in vals:
        print("Jailer v%s\n" % VERSION)
        return 0
    try:
        return _run(argv, vals, extra, knobs_doc, record_dir, orig_env, start_us,
                    start_cpu_us)
    except JailerError as e:
        return _fail(str(e))


def _run(argv, vals, extra, knobs_doc, record_dir, orig_env, start_us, start_cpu_us):
    cfg = _validate(vals)
    # Fallbacks for callers that spawn the jailer with a clean environment.
    if knobs_doc is None:
        knobs_doc = knobmod.read_file({"FAKE_FC_KNOBS": os.path.join(cfg["base"], KNOBS_FILE)}) \
            if os.path.exists(os.path.join(cfg["base"], KNOBS_FILE)) else {}
    if record_dir is None and os.path.isdir(os.path.join(cfg["base"], RECORD_DIR)):
        record_dir = os.path.join(cfg["base"], RECORD_DIR)
    vm_dir = os.path.join(cfg["base"], cfg["exec_file_name"], cfg["id"])
    root = os.path.join(vm_dir, "root")
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as e:
        raise JailerError("Failed to create directory %s: %s" % (root, sysc.io_error(e)))
    uid, gid = cfg["uid"], cfg["gid"]
    exec_name = cfg["exec_file_name"]
    _copy_exec(cfg["exec_file"], os.path.join(root, exec_name), uid, gid)

    # Recording lives beside root/, outside the jail: fds opened now, while still root.
    vm_dir_fd = os.open(vm_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    rec = Recorder.open("fake-fc.calls.jsonl", dir_fd=vm_dir_fd)
    if record_dir:
        rec.also(os.path.join(record_dir, "%s.calls.jsonl" % cfg["id"]))
    report = {"argv": argv, "jailer_pid": os.getpid(), "id": cfg["id"],
              "exec_file": cfg["exec_file"], "exec_file_name": exec_name, "uid": uid,
              "gid": gid, "chroot_base": cfg["base"], "chroot_dir": root,
              "netns": cfg["netns"], "daemonize": cfg["daemonize"],
              "new_pid_ns": cfg["new_pid_ns"], "cgroup_version": cfg["cgroup_version"],
              "parent_cgroup": cfg["parent_cgroup"],
              "cgroup_args": ["%s=%s" % p for p in cfg["cgroups"]],
              "resource_limits": cfg["rlimits"], "extra_args": extra}

    if cfg["netns"]:
        try:
            nsfd = os.open(cfg["netns"], os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise JailerError("Failed to open file %s: %s" % (cfg["netns"], sysc.io_error(e)))
        try:
            sysc.setns(nsfd, sysc.CLONE_NEWNET)
        except OSError as e:
            raise JailerError("Failed to join network namespace: netns: %s" % sysc.io_error(e))
        os.close(nsfd)

    for name, val in cfg["rlimits"].items():
        res = resource.RLIMIT_NOFILE if name == "no-file" else resource.RLIMIT_FSIZE
        try:
            resource.setrlimit(res, (val, val))
        except (OSError, ValueError) as e:
            raise JailerError("Failed to set limit for resource: %s" % e)

    cg = Cgroups(cfg["cgroup_version"], cfg["parent_cgroup"], cfg["id"])
    try:
        cg.setup(cfg["cgroups"], os.getpid())
    finally:
        report["cgroup_writes"] = cg.writes
        report["cgroup_dirs_created"] = cg.dirs

    devnull = None
    if cfg["daemonize"]:
        try:
            devnull = os.open(DEV_NULL, os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            raise JailerError("Failed to open /dev/null: %s" % sysc.io_error(e))

    # The guest-agent stand-in must run outside the jail (it runs a shell command): keep a
    # handle on the real root so the helper, forked later as the VMM's child, can leave the jail.
    knobs = knobmod.select(knobs_doc, cfg["id"])
    real_root = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) \
        if knobs.get("agent_cmd") else -1
    orig_cwd = os.getcwd()
    uffd = _userfaultfd_minor()

    try:
        os.chdir(root)
        os.chroot(".")
        os.chdir("/")
    except OSError as e:
        raise JailerError("Failed to chdir into chroot directory: %s" % sysc.io_error(e))
    _jail_devices(uid, gid, uffd)

    if cfg["daemonize"]:
        if os.fork() > 0:
            os._exit(0)
        try:
            os.setsid()
        except OSError as e:
            raise JailerError("Failed to daemonize: setsid: %s" % sysc.io_error(e))
        if os.fork() > 0:
            os._exit(0)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)

    pid_path = "/%s.pid" % exec_name
    fc_argv = ["/" + exec_name, "--id", cfg["id"], "--start-time-us", str(start_us),
               "--start-time-cpu-us", str(start_cpu_us), "--parent-cpu-time-us",
               str(int(time.process_time() * 1e6))] + list(extra)
    report["firecracker_argv"] = fc_argv
    if cfg["new_pid_ns"]:
        sysc.unshare(sysc.CLONE_NEWPID)
        child = os.fork()
        if child > 0:
            _write_pidfile(pid_path, child)
            report["firecracker_pid"] = child
            rec.event("jailer", **report)
            _write_report(vm_dir_fd, report)
            os._exit(0)
    else:
        _write_pidfile(pid_path, os.getpid())
        report["firecracker_pid"] = os.getpid()
        rec.event("jailer", **report)
        _write_report(vm_dir_fd, report)
    os.close(vm_dir_fd)

    helper = None
    if real_root >= 0:
        helper = AgentHelper.start(knobs["agent_cmd"], orig_env, knobs.get("agent_env"), rec,
                                   escape=(real_root, orig_cwd))
        os.close(real_root)
    try:
        os.setgid(gid)
        os.setgroups([])
        os.setuid(uid)
    except OSError as e:
        return _fail("Failed to exec into Firecracker: %s" % sysc.io_error(e))
    sysc.set_comm(exec_name)
    ctx = {"knobs_doc": knobs_doc, "recorder": rec, "helper": helper, "jail_root": root}
    return vmmmod.main(fc_argv, ctx)


def _write_pidfile(path, pid):
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise JailerError("Failed to open file %s: %s" % (path, sysc.io_error(e)))
    os.write(fd, str(pid).encode())
    os.close(fd)


def _write_report(dir_fd, report):
    data = (json.dumps(report, indent=1) + "\n").encode()
    fd = os.open("fake-jailer.json.tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                 0o644, dir_fd=dir_fd)
    os.write(fd, data)
    os.close(fd)
    os.rename("fake-jailer.json.tmp", "fake-jailer.json", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
