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


# Firecracker and the jailer are static musl binaries: Rust's io::Error text comes from musl's
# strerror, which differs from glibc's (e.g. "Address in use", "Resource busy").
_MUSL = """EILSEQ Illegal byte sequence|EDOM Domain error|ERANGE Result not representable|
ENOTTY Not a tty|EACCES Permission denied|EPERM Operation not permitted|
ENOENT No such file or directory|ESRCH No such process|EEXIST File exists|
EOVERFLOW Value too large for data type|ENOSPC No space left on device|ENOMEM Out of memory|
EBUSY Resource busy|EINTR Interrupted system call|EAGAIN Resource temporarily unavailable|
ESPIPE Invalid seek|EXDEV Cross-device link|EROFS Read-only file system|
ENOTEMPTY Directory not empty|ECONNRESET Connection reset by peer|ETIMEDOUT Operation timed out|
ECONNREFUSED Connection refused|EHOSTDOWN Host is down|EHOSTUNREACH Host is unreachable|
EADDRINUSE Address in use|EPIPE Broken pipe|EIO I/O error|ENXIO No such device or address|
ENOTBLK Block device required|ENODEV No such device|ENOTDIR Not a directory|
EISDIR Is a directory|ETXTBSY Text file busy|ENOEXEC Exec format error|EINVAL Invalid argument|
E2BIG Argument list too long|ELOOP Symbolic link loop|ENAMETOOLONG Filename too long|
ENFILE Too many open files in system|EMFILE No file descriptors available|
EBADF Bad file descriptor|ECHILD No child process|EFAULT Bad address|EFBIG File too large|
EMLINK Too many links|ENOLCK No locks available|EDEADLK Resource deadlock would occur|
ENOTRECOVERABLE State not recoverable|EOWNERDEAD Previous owner died|
ECANCELED Operation canceled|ENOSYS Function not implemented|
ENOMSG No message of desired type|EIDRM Identifier removed|ENODATA No data available|
ETIME Device timeout|EPROTO Protocol error|EBADMSG Bad message|
EBADFD File descriptor in bad state|ENOTSOCK Not a socket|
EDESTADDRREQ Destination address required|EMSGSIZE Message too large|
EPROTOTYPE Protocol wrong type for socket|ENOPROTOOPT Protocol not available|
EPROTONOSUPPORT Protocol not supported|ESOCKTNOSUPPORT Socket type not supported|
ENOTSUP Not supported|EPFNOSUPPORT Protocol family not supported|
EAFNOSUPPORT Address family not supported by protocol|EADDRNOTAVAIL Address not available|
ENETDOWN Network is down|ENETUNREACH Network unreachable|ENETRESET Connection reset by network|
ECONNABORTED Connection aborted|ENOBUFS No buffer space available|EISCONN Socket is connected|
ENOTCONN Socket not connected|ESHUTDOWN Cannot send after socket shutdown|
EALREADY Operation already in progress|EINPROGRESS Operation in progress|
ESTALE Stale file handle|EREMOTEIO Remote I/O error|EDQUOT Quota exceeded|
ENOMEDIUM No medium found|EMEDIUMTYPE Wrong medium type|EMULTIHOP Multihop attempted"""


def _musl_table():
    import errno
    t = {}
    for item in _MUSL.replace("\n", "").split("|"):
        name, text = item.strip().split(" ", 1)
        code = getattr(errno, name, None)
        if code is not None and code not in t:
            t[code] = text
    return t


MUSL_STRERROR = _musl_table()


def strerror(code):
    return MUSL_STRERROR.get(code, "No error information")


def io_error(e):
    """Rust's Display of an io::Error built from an errno (musl's strerror text)."""
    if isinstance(e, OSError):
        if e.errno is None:
            return str(e)
        e = e.errno
    return "%s (os error %d)" % (strerror(e), e)
