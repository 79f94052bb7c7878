# SPDX-License-Identifier: MIT
"""The fake's snapshot files (docs/firecracker.md N).

State file: b"FAKEFC-SNAPSHOT\\n" + one JSON line + b"sha256 <hex of the JSON line>\\n". The JSON
records what a load checks and reproduces: the snapshot format version, the machine (vCPUs,
memory, SMT, CPU template, huge pages), every drive with the path it was opened at, every
network interface with its TAP name, the vsock device with its uds_path, the guest's memory
size and boot id. A file that is cut short, edited or not ours fails the checksum: the load is
fatal (exit 1), as Firecracker's CRC64 check is.

Memory file: b"FAKEFC-MEMORY\\n" + JSON line (boot id, size) and then sparse up to the guest's
memory size (a Full snapshot of a real VM is the whole guest memory); with the guest_touch_mib
knob, the guest's touched pages follow from offset PAGE.
"""
import hashlib
import json
import os

STATE_MAGIC = b"FAKEFC-SNAPSHOT\n"
MEM_MAGIC = b"FAKEFC-MEMORY\n"
FORMAT_VERSION = "10.0.0"
STATE_MAX = 1 << 20
PAGE = 4096


class SnapshotError(Exception):
    pass


def encode_state(doc):
    body = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return STATE_MAGIC + body + b"\n" + b"sha256 " + \
        hashlib.sha256(body).hexdigest().encode() + b"\n"


def decode_state(data):
    """The recorded document, or SnapshotError saying what is wrong with the file."""
    if not data.startswith(STATE_MAGIC):
        raise SnapshotError("Snapshot file is not a snapshot (bad magic)")
    rest = data[len(STATE_MAGIC):]
    nl = rest.find(b"\n")
    if nl < 0:
        raise SnapshotError("Snapshot file is truncated")
    body, tail = rest[:nl], rest[nl + 1:]
    if not tail.startswith(b"sha256 ") or not tail.endswith(b"\n") or \
            tail[7:-1] != hashlib.sha256(body).hexdigest().encode():
        raise SnapshotError("Snapshot file CRC validation failed")
    try:
        doc = json.loads(body)
    except ValueError:
        raise SnapshotError("Snapshot file CRC validation failed")
    if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
        raise SnapshotError("Snapshot version %s is not supported by this Firecracker "
                            "(%s)" % (doc.get("version") if isinstance(doc, dict) else "?",
                                      FORMAT_VERSION))
    return doc


def write_file(path, data, size=None):
    """O_TRUNC over an existing file, as the jail's uid (the caller is that process)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if size is not None and size > len(data):
            os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_state(path):
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks, total = [], 0
        while total <= STATE_MAX:
            c = os.read(fd, 65536)
            if not c:
                break
            chunks.append(c)
            total += len(c)
    finally:
        os.close(fd)
    if total > STATE_MAX:
        raise SnapshotError("Snapshot file is too large")
    return decode_state(b"".join(chunks))


def mem_header(boot_id, size):
    return MEM_MAGIC + json.dumps({"boot_id": boot_id, "size": size},
                                  sort_keys=True).encode() + b"\n"


def check_mem_fd(fd, size, boot_id):
    """A memory file the restored guest can run from: the size and the guest it belongs to."""
    st = os.fstat(fd)
    if st.st_size < size:
        raise SnapshotError("Cannot restore the guest memory: the memory file is %d bytes, the "
                            "guest has %d" % (st.st_size, size))
    head = os.pread(fd, 512, 0)
    want = mem_header(boot_id, size)
    if head[:len(want)] != want:
        raise SnapshotError("Cannot restore the guest memory: the memory file belongs to "
                            "another snapshot")
