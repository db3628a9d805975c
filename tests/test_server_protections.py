"""Unit tests of ``textdiffseg_server``'s rules (no server): names, archives, admin routes, answer scrubbing."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from textdiffseg_server.names import UnsafeNameError, check_inside, check_name, is_safe_name
from textdiffseg_server.policy import is_admin_route
from textdiffseg_server.scrub import scrub
from textdiffseg_server.session_endpoint import UnsafeArchiveError, extract_archive


@pytest.mark.parametrize(
    "value",
    ["../x", "/etc/passwd", "a/b", "a\\b", "..", ".", ".hidden", "bad\x00name", "tab\tname", " lead", "trail ", "",
     "x" * 201, 7, None],
)
def test_unsafe_names_are_refused(value: object) -> None:
    assert not is_safe_name(value)
    with pytest.raises(UnsafeNameError, match="tag"):
        check_name(value, "tag")


@pytest.mark.parametrize(
    "value", ["phantom_000", "1.2.840.113619.2.55.3", "case 12", "Leber-Tumor_2", "final", "x" * 200]
)
def test_ordinary_ids_pass(value: str) -> None:
    assert check_name(value, "image") == value


def test_paths_must_resolve_inside_their_root(tmp_path: Path) -> None:
    root = tmp_path / "studies"
    root.mkdir()
    (root / "link").symlink_to("/etc")
    assert check_inside(root / "a.nii.gz", root, "image") == root / "a.nii.gz"
    for escaping in (root / ".." / "x", root / "link" / "passwd", Path("/etc/passwd")):
        with pytest.raises(UnsafeNameError, match="outside"):
            check_inside(escaping, root, "image")


def _zip(entries: list[tuple[str, int]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, mode in entries:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            archive.writestr(info, "/etc/passwd" if stat.S_ISLNK(mode) else "data")
    return buffer.getvalue()


def _tar_with(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, link
        archive.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("archive", "message"),
    [
        (_zip([("../../escaped", 0o100644)]), "'..' path"),
        (_zip([("/abs/escaped", 0o100644)]), "absolute"),
        (_zip([("link.nii.gz", 0o120777)]), "symbolic link"),
        (_tar_with("../escaped"), "'..' path"),
        (_tar_with("hard", tarfile.LNKTYPE, "/etc/passwd"), "not a plain file"),
        (_tar_with("dev", tarfile.CHRTYPE), "not a plain file"),
        (b"not an archive at all", "not a zip or tar"),
    ],
)
def test_unsafe_archives_are_refused_and_extract_nothing(tmp_path: Path, archive: bytes, message: str) -> None:
    upload, dest = tmp_path / "upload", tmp_path / "dest"
    upload.write_bytes(archive)
    dest.mkdir()
    with pytest.raises(UnsafeArchiveError, match=message):
        extract_archive(upload, dest)
    assert list(dest.iterdir()) == [] and not (tmp_path / "escaped").exists()


def test_a_plain_series_archive_is_extracted(tmp_path: Path) -> None:
    upload, dest = tmp_path / "series.zip", tmp_path / "dest"
    upload.write_bytes(_zip([("ct/1.dcm", 0o100644), ("ct/2.dcm", 0o100644)]))
    dest.mkdir()
    extract_archive(upload, dest)
    assert sorted(p.name for p in (dest / "ct").iterdir()) == ["1.dcm", "2.dcm"]


@pytest.mark.parametrize(
    ("method", "path", "admin"),
    [
        ("PUT", "/model/textdiffseg", True),
        ("DELETE", "/model/textdiffseg", True),
        ("GET", "/model/textdiffseg", False),
        ("POST", "/reload", True),
        ("GET", "/logs/", True),
        ("POST", "/train/textdiffseg", True),
        ("DELETE", "/train/", True),
        ("GET", "/train/", False),
        ("POST", "/scoring/diffusion_uncertainty", True),
        ("POST", "/batch/infer/textdiffseg", True),
        ("DELETE", "/datastore/image", True),
        ("PUT", "/datastore/label", False),
        ("POST", "/infer/textdiffseg", False),
        ("POST", "/activelearning/random", False),
    ],
)
def test_admin_routes(method: str, path: str, admin: bool) -> None:
    assert is_admin_route(method, path) is admin


def test_scrub_replaces_server_folders_and_drops_traceback_lines() -> None:
    roots = [("/srv/app", "<app>"), ("/srv", "<studies>")]
    answer = {
        "published": "/srv/app/model/textdiffseg.pt",
        "details": [
            "epoch 1 loss 0.5",
            "Traceback (most recent call last):",
            '  File "/srv/app/lib/trainers/textdiffseg.py", line 10, in __call__',
            "    raise ValueError(x)",
            "ValueError: no image has a final label yet",
        ],
        "/srv/key": 1,
    }
    cleaned = scrub(answer, roots)
    assert cleaned["published"] == "<app>/model/textdiffseg.pt"
    assert cleaned["details"] == ["epoch 1 loss 0.5", "ValueError: no image has a final label yet"]
    assert "<studies>/key" in cleaned
