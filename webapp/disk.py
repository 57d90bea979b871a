"""Free space in DATA_DIR: measured, named in Chinese, and checked before a file is written.

Why: on a nearly full filesystem every write the product makes fails somewhere else (Redis cannot
save, SQLite cannot grow, an upload stops half-way). A write is therefore refused before it starts
when the room is not there, and a file is written under a temporary name and renamed into place,
so that no partial file is ever left behind. Thresholds are settings (README, Configuration).
"""
from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask import current_app

from channels.records import SourceRejected
from webapp.statuses import HealthCode, Reason

MB = 1024 * 1024


class DiskFull(SourceRejected):
    """Not enough room in DATA_DIR for a write; the message names the folder and its free space."""

    reason = Reason.DISK_FULL


def free_bytes(folder: str | Path) -> int:
    """Bytes a process may still write on the filesystem holding `folder` (or, while it is not yet
    created, its nearest existing parent: the filesystem it will be made on)."""
    path = Path(folder).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def low_space_message(folder: str | Path, free: int, limit_mb: int) -> str:
    """磁盘空间不足 with the folder and the free space, as pages, the CLI and mails say it."""
    return HealthCode.DISK_LOW.label.format(folder=folder, free_mb=free // MB, limit_mb=limit_mb)


def data_dir() -> Path:
    """The install's DATA_DIR, whose filesystem every check and refusal is about."""
    return Path(current_app.config["DATA_DIR"])


def disk_full_message() -> str:
    """A write failed for lack of room: 磁盘空间不足, DATA_DIR and what is left (pages and commands)."""
    return HealthCode.DISK_FULL.label.format(folder=data_dir(), free_mb=free_bytes(data_dir()) // MB)


def check_room(needed: int) -> None:
    """Refuse with DiskFull unless `needed` bytes fit in DATA_DIR and DISK_FAULT_MB remain after."""
    limit_mb = current_app.config["DISK_FAULT_MB"]
    free = free_bytes(data_dir())
    if free < needed + limit_mb * MB:
        raise DiskFull(f"{low_space_message(data_dir(), free, limit_mb)}；文件未保存")


@contextmanager
def written_atomically(target: Path) -> Iterator[Path]:
    """A temporary path beside `target` to write; renamed to `target` when the block ends well,
    removed on any failure (a full disk, a refused file), so no partial file is ever left."""
    temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
    try:
        yield temp
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def is_disk_full(error: BaseException) -> bool:
    """Whether an error is the disk being full: ENOSPC, SQLite's "database or disk is full", or
    Redis's MISCONF (it cannot save, so it refuses writes)."""
    for cause in (error, getattr(error, "orig", None), error.__cause__, error.__context__):
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(cause or "")
        if "database or disk is full" in text or "MISCONF" in text or "No space left" in text:
            return True
    return False
