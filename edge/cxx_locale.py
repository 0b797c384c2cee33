"""Initialise the system C++ runtime's locale before usearch loads.

usearch's extension carries its own C++ runtime; loaded first, it leaves the system
libstdc++'s locale half set up, and every later `std::regex` in the process (pyarrow turning a
zoned timestamp into Python, onnxruntime at import) crashes with SIGSEGV. Asking the system
runtime for its classic locale once, before usearch is imported, sets it up properly. Measured:
`import usearch.index; import onnxruntime` crashes; with this first, it does not.
"""

from __future__ import annotations

import contextlib
import ctypes


def init_system_locale() -> None:
    with contextlib.suppress(OSError, AttributeError):  # no GNU C++ runtime: nothing to do
        ctypes.CDLL("libstdc++.so.6")._ZNSt6locale7classicEv()
