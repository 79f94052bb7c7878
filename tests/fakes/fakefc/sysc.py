# SPDX-License-Identifier: MIT
"""The few syscalls Python 3.11's os module lacks, through ctypes."""
import ctypes
import ctypes.util
import os

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
SYS_close_range = 436
PR_SET_NAME = 15
PR_SET_PDEATHSIG = 1


def _check(ret):
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return ret


def setns(fd, nstype):
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)))


def unshare(flags):
    _check(_libc.unshare(ctypes.c_int(flags)))


def close_range(first, last=0xFFFFFFFF, flags=0):
    _check(_libc.syscall(ctypes.c_long(SYS_close_range), ctypes.c_uint(first),
                         ctypes.c_uint(last), ctypes.c_uint(flags)))


def set_comm(name):
    buf = ctypes.create_string_buffer(name.encode()[:15])
    _libc.prctl(ctypes.c_int(PR_SET_NAME), buf, 0, 0, 0)


def set_pdeathsig(sig):
    _libc.prctl(ctypes.c_int(PR_SET_PDEATHSIG), ctypes.c_ulong(sig), 0, 0, 0)


def io_error(e):
    """Rust's Display of an io::Error built from an errno."""
    if isinstance(e, OSError):
        if e.errno is None:
            return str(e)
        e = e.errno
    return "%s (os error %d)" % (os.strerror(e), e)
