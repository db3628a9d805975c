"""MONAI Label's local datastore with every client-supplied name checked and every stored file validated first.

:class:`CheckedLocalDatastore` is ``LocalDatastore`` with these differences:

* Every image id, label id, tag and file name that reaches a path passes ``textdiffseg_server.names.check_name`` and
  every path built from one passes ``check_inside`` (resolved, symlinks followed, under the images or labels folder):
  ``UnsafeNameError`` (a ``ValueError``) otherwise. This covers every method that joins a client value onto a folder
  (uploads, downloads, infos, removals, lookups) and :meth:`datalist` (what training reads and the dataset archive
  zips), which skips entries that resolve outside the datastore. Unknown but safe ids behave as in MONAI Label.
* ``add_image`` and ``save_label`` validate the file before anything is written (``stored_files``: accepted type,
  readable complete 3D image; a label on its image's grid with whole values 0-255, except the float tags in
  :data:`FLOAT_LABEL_TAGS`), then copy it atomically (a temporary file in the destination folder, fsynced, renamed
  over the final name), so a refused or interrupted upload never leaves a partial file under a stored name. The
  ``datastore_v2.json`` update is LocalDatastore's, under the same lock.
* Replacing an image keeps its labels in ``datastore_v2.json`` (LocalDatastore drops them from the JSON but leaves
  the files, which its next reconcile adds back) and is refused while it has labels and the new grid differs; a
  replaced image or label with another extension has its old file removed, so it cannot come back on reconcile.
* Removals delete the stored file itself (never the target of a link, never a folder tree).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from filelock import FileLock
from monailabel.datastore.local import DataModel, ImageLabelModel, LocalDatastore
from monailabel.interfaces.exception import ImageNotFoundException

from lib.datastores.stored_files import (
    DEFAULT_MAX_VOXELS,
    IMAGE_SUFFIXES,
    LABEL_SUFFIXES,
    InvalidStoredFileError,
    accepted_suffix,
    check_image,
    check_label,
    check_same_grid,
    read_grid,
)
from textdiffseg.atomic_files import copy_atomic
from textdiffseg_server.names import UnsafeNameError, check_inside, check_name

__all__ = ["CheckedLocalDatastore", "FLOAT_LABEL_TAGS", "InvalidStoredFileError", "UnsafeNameError"]

logger = logging.getLogger(__name__)

# Tags whose labels are float maps the app stores itself (``lib/infers/uncertainty_label.UNCERTAINTY_TAG``).
FLOAT_LABEL_TAGS = frozenset({"uncertainty"})
STORED_PATTERNS = tuple(f"*{suffix}" for suffix in LABEL_SUFFIXES)


def _remove_stored(path: Path, what: str) -> None:
    """Delete one stored file (a link itself, not its target); a folder is refused, a missing file ignored."""
    if path.is_dir() and not path.is_symlink():
        raise InvalidStoredFileError(f"{what} is a folder, not a file; it was not removed")
    path.unlink(missing_ok=True)


class CheckedLocalDatastore(LocalDatastore):
    """``LocalDatastore`` that refuses unsafe names, paths outside its folders and invalid files (module docstring)."""

    def __init__(
        self,
        datastore_path: str,
        *,
        images_dir: str = ".",
        labels_dir: str = "labels",
        datastore_config: str = "datastore_v2.json",
        auto_reload: bool = False,
        read_only: bool = False,
        max_voxels: int = DEFAULT_MAX_VOXELS,
    ) -> None:
        """Open (or create) the datastore at ``datastore_path``.

        Args:
            datastore_path: the studies folder.
            images_dir, labels_dir, datastore_config, auto_reload, read_only: as ``LocalDatastore``.
            max_voxels: refuse images and labels with more voxels than this (checked in the header).

        Files on disk are found by the accepted suffixes only (``*.nii.gz``, ``*.nii``, ``*.nrrd``, ``*.mha``,
        ``*.seg.nrrd``), not MONAI Label's ``MONAI_LABEL_DATASTORE_FILE_EXT``.
        """
        self._max_voxels = int(max_voxels)
        super().__init__(
            datastore_path,
            images_dir=images_dir,
            labels_dir=labels_dir,
            datastore_config=datastore_config,
            extensions=STORED_PATTERNS,
            auto_reload=auto_reload,
            read_only=read_only,
        )

    # --- names and paths ---------------------------------------------------------------------------------------------

    def _to_id(self, file: str) -> tuple[str, str]:
        """``(id, extension)`` of a file found on disk; the longest accepted suffix wins (``x.seg.nrrd`` -> ``x``)."""
        lower = file.lower()
        for suffix in sorted(LABEL_SUFFIXES, key=len, reverse=True):
            if lower.endswith(suffix) and len(file) > len(suffix):
                return file[: -len(suffix)], file[-len(suffix) :]
        return super()._to_id(file)

    def _images_root(self) -> str:
        return self._datastore.image_path()

    def _labels_root(self) -> str:
        return self._datastore.label_path(None)

    def _stored_path(self, folder: str, file_name: str, root: str, what: str) -> Path:
        """``folder/file_name`` (not resolved, so a link is replaced or removed itself) once it resolves under root."""
        check_name(file_name, f"{what} file name")
        path = Path(folder) / file_name
        check_inside(path, root, what)
        return path

    def _image_file(self, image_id: str, ext: str) -> Path:
        return self._stored_path(self._images_root(), f"{image_id}{ext}", self._images_root(), "image")

    def _label_file(self, image_id: str, tag: str, ext: str) -> Path:
        return self._stored_path(self._datastore.label_path(tag), f"{image_id}{ext}", self._labels_root(), "label")

    # --- reads -------------------------------------------------------------------------------------------------------

    def get_image(self, image_id: str, params: Any = None) -> Any:
        """LocalDatastore's, for a checked id."""
        check_name(image_id, "image id")
        return super().get_image(image_id, params)

    def get_image_uri(self, image_id: str) -> str:
        """The image's resolved path, refused when it lies outside the images folder; ``""`` for an unknown id."""
        check_name(image_id, "image id")
        uri = super().get_image_uri(image_id)
        return str(check_inside(uri, self._images_root(), "image")) if uri else uri

    def get_image_info(self, image_id: str) -> dict[str, Any]:
        """LocalDatastore's (``path`` included), for a checked id whose file lies inside the images folder."""
        check_name(image_id, "image id")
        info = super().get_image_info(image_id)
        if "path" in info:
            info["path"] = str(check_inside(info["path"], self._images_root(), "image"))
        return info

    def get_label(self, label_id: str, label_tag: str, params: Any = None) -> Any:
        """LocalDatastore's, for a checked id and tag."""
        check_name(label_id, "label id")
        check_name(label_tag, "label tag")
        return super().get_label(label_id, label_tag, params)

    def get_label_uri(self, label_id: str, label_tag: str) -> str:
        """The label's resolved path, refused when it lies outside the labels folder; ``""`` when unknown."""
        check_name(label_id, "label id")
        check_name(label_tag, "label tag")
        uri = super().get_label_uri(label_id, label_tag)
        return str(check_inside(uri, self._labels_root(), "label")) if uri else uri

    def get_label_info(self, label_id: str, label_tag: str) -> dict[str, Any]:
        """LocalDatastore's, for a checked id and tag."""
        check_name(label_id, "label id")
        check_name(label_tag, "label tag")
        return super().get_label_info(label_id, label_tag)

    def get_labels_by_image_id(self, image_id: str) -> dict[str, str]:
        """LocalDatastore's, for a checked id."""
        check_name(image_id, "image id")
        return super().get_labels_by_image_id(image_id)

    def get_label_by_image_id(self, image_id: str, tag: str) -> str:
        """LocalDatastore's, for a checked id and tag."""
        check_name(image_id, "image id")
        check_name(tag, "label tag")
        return super().get_label_by_image_id(image_id, tag)

    def datalist(self, full_path: bool = True) -> list[dict[str, Any]]:
        """LocalDatastore's image/final-label pairs, without pairs whose files resolve outside the datastore."""
        resolved = super().datalist(full_path=True)
        listed = resolved if full_path else super().datalist(full_path=False)
        kept = []
        for pair, entry in zip(resolved, listed):
            try:
                check_inside(pair["image"], self._images_root(), "image")
                check_inside(pair["label"], self._labels_root(), "label")
            except UnsafeNameError:
                logger.warning("datalist: skipping %s: a file resolves outside the datastore", Path(pair["image"]).name)
                continue
            kept.append(entry)
        return kept

    # --- info updates ------------------------------------------------------------------------------------------------

    def update_image_info(self, image_id: str, info: dict[str, Any]) -> None:
        """LocalDatastore's, for a checked id."""
        check_name(image_id, "image id")
        super().update_image_info(image_id, info)

    def update_label_info(self, label_id: str, label_tag: str, info: dict[str, Any]) -> None:
        """LocalDatastore's, for a checked id and tag."""
        check_name(label_id, "label id")
        check_name(label_tag, "label tag")
        super().update_label_info(label_id, label_tag, info)

    # --- writes ------------------------------------------------------------------------------------------------------

    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        """Validate, then store ``image_filename`` atomically as ``image_id`` (its file name's stem when empty).

        Raises:
            UnsafeNameError: the id or file name is not a safe name, or the destination resolves outside.
            InvalidStoredFileError: not an accepted, complete 3D image; or it replaces a labelled image of another grid.
        """
        suffix = accepted_suffix(os.path.basename(image_filename), IMAGE_SUFFIXES)
        if not image_id:
            image_id = os.path.basename(image_filename)[: -len(suffix)]
        check_name(image_id, "image id")
        name = f"{image_id}{suffix}"
        dest = self._image_file(image_id, suffix)
        grid = check_image(image_filename, suffix, self._max_voxels)

        previous = self._datastore.objects.get(image_id)
        if previous and previous.labels:
            try:
                old_path = self._image_file(image_id, previous.image.ext)
                old_grid = read_grid(old_path, accepted_suffix(old_path.name, IMAGE_SUFFIXES), "image")
            except (InvalidStoredFileError, UnsafeNameError, OSError):
                old_grid = None  # nothing readable to compare with
            if old_grid is not None:
                try:
                    check_same_grid(grid, old_grid, image_id)
                except InvalidStoredFileError:
                    tags = ", ".join(sorted(previous.labels))
                    raise InvalidStoredFileError(
                        f"image '{image_id}' has labels ({tags}) on grid {old_grid.size}; the new image's grid "
                        f"{grid.size} differs: remove the image first"
                    ) from None

        logger.info("Adding Image: %s => %s", image_id, name)
        with FileLock(self._lock_file):
            copy_atomic(image_filename, dest)
            if previous and previous.image.ext != suffix:
                _remove_stored(self._image_file(image_id, previous.image.ext), "image")

            image_info = dict(image_info) if image_info else {}
            image_info["ts"] = int(time.time())
            image_info["name"] = name
            labels = dict(previous.labels) if previous else {}
            self._datastore.objects[image_id] = ImageLabelModel(
                image=DataModel(info=image_info, ext=suffix), labels=labels
            )
            self._update_datastore_file(lock=False)
        return image_id

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        """Validate, then store ``label_filename`` atomically as the ``label_tag`` label of ``image_id``.

        Raises:
            UnsafeNameError: the id, tag or file name is not a safe name, or a path resolves outside.
            ImageNotFoundException: no such image (as LocalDatastore).
            InvalidStoredFileError: not an accepted readable label on the image's grid with whole values 0-255 (the
                value check is skipped for :data:`FLOAT_LABEL_TAGS`).
        """
        check_name(image_id, "image id")
        check_name(label_tag, "label tag")
        obj = self._datastore.objects.get(image_id)
        if not obj:
            raise ImageNotFoundException(f"Image {image_id} not found")
        suffix = accepted_suffix(os.path.basename(label_filename), LABEL_SUFFIXES)
        name = f"{image_id}{suffix}"
        dest = self._label_file(image_id, label_tag, suffix)

        image_uri = self.get_image_uri(image_id)
        what = f"image '{image_id}' in the datastore"
        try:
            image_suffix = accepted_suffix(os.path.basename(image_uri), IMAGE_SUFFIXES)
        except InvalidStoredFileError:
            raise InvalidStoredFileError(f"{what} is not an accepted image file") from None
        image_grid = read_grid(image_uri, image_suffix, what)
        integer_values = label_tag not in FLOAT_LABEL_TAGS
        check_label(label_filename, suffix, image_grid, image_id, integer_values, self._max_voxels)

        logger.info("Adding Label: %s => %s => %s", image_id, label_tag, name)
        with FileLock(self._lock_file):
            dest.parent.mkdir(parents=True, exist_ok=True)
            copy_atomic(label_filename, dest)
            previous = obj.labels.get(label_tag)
            if previous and previous.ext != suffix:
                _remove_stored(self._label_file(image_id, label_tag, previous.ext), "label")

            label_info = dict(label_info) if label_info else {}
            label_info["ts"] = int(time.time())
            label_info["name"] = name
            obj.labels[label_tag] = DataModel(info=label_info, ext=suffix)
            self._update_datastore_file(lock=False)
        return image_id

    def remove_label(self, label_id: str, label_tag: str) -> None:
        """Delete the stored label file (checked id, tag and path); an unknown label is ignored, as LocalDatastore."""
        check_name(label_id, "label id")
        check_name(label_tag, "label tag")
        logger.info("Removing label: %s => %s", label_id, label_tag)
        label = self._datastore.label(label_id, label_tag)
        if label:
            _remove_stored(self._label_file(label_id, label_tag, label.ext), "label")
        if not self._auto_reload:
            self.refresh()

    def remove_image(self, image_id: str) -> None:
        """Delete the image's labels and its file (checked id and paths); ``ImageNotFoundException`` when unknown."""
        check_name(image_id, "image id")
        logger.info("Removing Image: %s", image_id)
        obj = self._datastore.objects.get(image_id)
        if not obj:
            raise ImageNotFoundException(f"Image {image_id} not found")
        path = self._image_file(image_id, obj.image.ext)
        for tag in list(obj.labels.keys()):
            self.remove_label(image_id, tag)
        _remove_stored(path, "image")
        if not self._auto_reload:
            self.refresh()
