"""``PUT /session/``: MONAI Label's session upload with checked file names and safe archive extraction.

MONAI Label writes each upload under its client-given base name and, with ``uncompress=true``, hands the archive
to ``shutil.unpack_archive``, which follows ``..`` members and creates symbolic links. Here every file name must be a
safe name (``names.check_name``), and an archive (``.zip``, ``.tar``, ``.tar.gz``/``.tgz``) is extracted only when
every member is a plain file or folder with a relative path that stays inside the extraction folder, with at most
:data:`MAX_MEMBERS` members and :data:`MAX_UNPACKED_BYTES` bytes in all; anything else is a 400 and nothing is kept.
Temporary files are removed on every path.
"""

from __future__ import annotations

import logging
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Annotated

from fastapi import APIRouter, Depends, File, HTTPException, UploadFile
from monailabel.config import settings
from monailabel.endpoints.user.auth import RBAC, User
from monailabel.interfaces.utils.app import app_instance

from textdiffseg_server.names import UnsafeNameError, check_inside, check_name

logger = logging.getLogger(__name__)

MAX_MEMBERS = 10_000  # a CT series is a few hundred to a few thousand DICOM files
MAX_UNPACKED_BYTES = 8 * 1024**3

router = APIRouter(prefix="/session", tags=["Session"])


class UnsafeArchiveError(ValueError):
    """An archive member is a link, absolute, escapes the folder, or the archive exceeds the limits."""


def _check_member(name: str, dest: Path) -> None:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if not parts or name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
        raise UnsafeArchiveError(f"archive member {name[:80]!r} has an absolute or '..' path")
    try:
        check_inside(dest / Path(*parts), dest, f"archive member {name[:80]!r}")
    except UnsafeNameError as err:
        raise UnsafeArchiveError(str(err)) from err


def _check_totals(count: int, size: int) -> None:
    if count > MAX_MEMBERS:
        raise UnsafeArchiveError(f"archive has {count} members, over the limit of {MAX_MEMBERS}")
    if size > MAX_UNPACKED_BYTES:
        raise UnsafeArchiveError(f"archive unpacks to {size:,} bytes, over the limit of {MAX_UNPACKED_BYTES:,}")


def extract_archive(archive: Path, dest: Path) -> None:
    """Extract a zip or tar archive into ``dest`` after checking every member (:class:`UnsafeArchiveError`)."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as handle:
            members = handle.infolist()
            _check_totals(len(members), sum(m.file_size for m in members))
            for member in members:
                _check_member(member.filename, dest)
                if (member.external_attr >> 16) & 0o170000 == 0o120000:
                    raise UnsafeArchiveError(f"archive member {member.filename[:80]!r} is a symbolic link")
            handle.extractall(dest)
        return
    if not tarfile.is_tarfile(archive):
        raise UnsafeArchiveError("uncompress=true but the upload is not a zip or tar archive")
    with tarfile.open(archive) as handle:
        members = handle.getmembers()
        _check_totals(len(members), sum(m.size for m in members))
        for member in members:
            _check_member(member.name, dest)
            if not (member.isfile() or member.isdir()):
                raise UnsafeArchiveError(f"archive member {member.name[:80]!r} is not a plain file or folder")
        handle.extractall(dest, filter="data")


def _save_uploads(files: list[UploadFile], folder: Path) -> list[Path]:
    saved = []
    for upload in files:
        name = check_name(Path(upload.filename or "").name, "file name")
        path = folder / name
        with path.open("wb") as out:
            shutil.copyfileobj(upload.file, out)
        saved.append(path)
    return saved


@router.put("/", summary="Create a new session with an image (file names checked; archives extracted safely)")
def create_session(
    user: Annotated[User, Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))],
    files: Annotated[list[UploadFile], File()],
    uncompress: bool = False,
    expiry: int = 0,
) -> dict:
    """Store the upload (one file, several files of one series, or one archive) as a new session."""
    sessions = app_instance().sessions()
    if sessions is None:
        raise HTTPException(406, "sessions are not enabled on this server")
    if not files:
        raise HTTPException(400, "no file uploaded")
    work = Path(tempfile.mkdtemp(prefix="session_upload_"))
    try:
        received = work / "received"
        received.mkdir()
        saved = _save_uploads(files, received)
        if uncompress:
            if len(saved) != 1:
                raise UnsafeArchiveError("uncompress=true needs exactly one archive")
            unpacked = work / "unpacked"
            unpacked.mkdir()
            extract_archive(saved[0], unpacked)
            source = unpacked
        else:
            source = saved[0] if len(saved) == 1 else received
        session_id, info = sessions.add_session(str(source), expiry, False)
    except (UnsafeNameError, UnsafeArchiveError) as err:
        raise HTTPException(400, str(err)) from err
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info("session %s created from %d file(s)", session_id, len(saved))
    return {"session_id": session_id, "session_info": info.to_json()}
