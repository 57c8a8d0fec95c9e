"""Compiles the C fan-out (media/fanout.c) into `media._fanout` with cffi, in API mode as
pylibsrtp builds its own binding: `python -m media.fanout_build`, which `make venv` runs (the
built library is not committed). It links nothing beyond libc: libsrtp's `srtp_protect` is
reached at run time through pylibsrtp's own library (media.hooks), so the SRTP state is the
one aiortc's sender keeps."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent


def builder() -> FFI:
    ffibuilder = FFI()
    ffibuilder.cdef((HERE / "fanout.h").read_text())
    ffibuilder.set_source(
        "media._fanout",
        '#include <stdint.h>\n#include "fanout.h"\n',
        sources=[str(HERE / "fanout.c")],
        include_dirs=[str(HERE)],
        extra_compile_args=["-O2", "-Wall", "-Wextra"],
    )
    return ffibuilder


def main() -> None:
    built = builder().compile(tmpdir=str(HERE.parent / "build" / "fanout"), verbose=False)
    # Beside this file, where `import media._fanout` finds it (the package is installed
    # editable, from the checkout). Renamed into place, never rewritten: a running server
    # has the old one mapped, and writing into it would crash that server.
    target = HERE / Path(built).name
    partial = target.with_name(target.name + ".partial")
    shutil.copy(built, partial)
    os.replace(partial, target)


if __name__ == "__main__":
    main()
