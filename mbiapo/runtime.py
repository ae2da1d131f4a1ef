"""Process tuning done once at start-up by the command line."""

import ctypes


def keep_freed_memory() -> None:
    """glibc returns freed blocks of a few MB to the OS at once, so every batched evaluation
    of thousands of rows page-faults its memory back in (analyses spent half their time in
    the kernel). Keep up to 1 GB of freed memory and stop adapting the mmap threshold."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_trim_threshold, 1 << 30)
    libc.mallopt(m_mmap_threshold, 1 << 25)  # glibc's largest (32 MB on 64-bit)
