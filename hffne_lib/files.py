"""Writing files so that a reader, or a run killed half-way, never sees half of one."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator


class OutputExistsError(Exception):
    """An output file exists and overwriting was not asked for."""


def check_absent(paths: Iterable[str | os.PathLike], how: str = "use --overwrite") -> None:
    """Raise OutputExistsError naming the first of ``paths`` that exists, and ``how`` to replace it."""
    for path in paths:
        if Path(path).exists():
            raise OutputExistsError(f"{path} exists ({how})")


@contextmanager
def replaced_atomically(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield ``<path><suffix>`` to write; when the block ends without an error, one rename puts it
    in ``path``'s place (a failed write leaves ``path`` as it was, and removes what it wrote)."""
    path = Path(path)
    tmp = path.with_name(path.name + suffix)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def write_text_atomically(path: str | os.PathLike, text: str, suffix: str = ".tmp") -> None:
    """``text`` into ``path`` through ``replaced_atomically``."""
    with replaced_atomically(path, suffix) as tmp:
        tmp.write_text(text)
