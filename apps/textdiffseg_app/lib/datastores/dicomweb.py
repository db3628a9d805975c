"""DICOMweb (e.g. Orthanc) datastore that stores final labels as DICOM-SEG written by pydicom-seg, offline.

MONAI Label 0.8.5's ``DICOMWebDatastore`` downloads dcmqi (``itkimage2segimage``) from GitHub when the app starts
and converts labels with it; this subclass never needs it. Differences, all on the ``final`` tag:

* ``save_label`` writes the label map as a DICOM-SEG of the image's series with
  :func:`textdiffseg.data.dicom_seg.write_dicom_seg` (segment number = label value, SegmentLabel = the
  ``label_info`` name for that value, else the vocabulary name), STOWs it, keeps the NIfTI in the local cache as the
  final label with ``label_info`` = ``[{"name", "idx"}]`` and the SEG's SeriesInstanceUID, and forgets the cached
  "which images are labelled" query so ``/datastore`` counts it at once.
* ``get_label_uri`` returns the cached final label of an image; a SEG made elsewhere (another server, a viewer) is
  downloaded, decoded with pydicom-seg, resampled onto the image grid and cached as ``<image>.nii.gz`` whose
  ``label_info`` comes from the SEG's SegmentLabels, so the trainer names its values like any saved label.
* ``datalist`` (what training reads) forgets the cached QIDO answers first: new SEGs from anyone are trained on.
"""

from __future__ import annotations

import logging
import os
import pathlib
import tempfile
from collections.abc import Mapping
from typing import Any

import SimpleITK as sitk  # noqa: N813 - the name SimpleITK documents
from dicomweb_client.session_utils import create_session_from_user_pass
from monailabel.config import settings
from monailabel.datastore.dicom import DICOMwebClientX, DICOMWebDatastore
from monailabel.datastore.local import LocalDatastore
from monailabel.datastore.utils.convert import binary_to_image
from monailabel.datastore.utils.dicom import dicom_web_download_series, dicom_web_upload_dcm
from monailabel.interfaces.datastore import DefaultLabelTag

from textdiffseg.data.dicom_seg import read_dicom_seg, resample_to, write_dicom_seg
from textdiffseg.label_info import label_info_names

logger = logging.getLogger(__name__)


class SegDICOMWebDatastore(DICOMWebDatastore):
    """``DICOMWebDatastore`` whose final labels are DICOM-SEG written and read with pydicom-seg."""

    def __init__(self, *args: Any, label_names: Mapping[int, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._label_names = dict(label_names or {})

    def _forget_label_queries(self) -> None:
        """Drop the cached QIDO answers (2 h TTL in MONAI Label) about which images have a SEG."""
        for method in (DICOMWebDatastore.get_labeled_images, DICOMWebDatastore.list_images):
            cache = getattr(method, "cache", None)
            if cache is not None:
                cache.clear()

    def datalist(self, full_path: bool = True) -> list[dict[str, Any]]:
        """Training pairs: asks the PACS afresh (no cached answer), so SEGs stored by others since are included."""
        self._forget_label_queries()
        return super().datalist(full_path)

    def save_label(
        self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any], label_id: str = ""
    ) -> str:
        """Store a label; a ``final`` one also goes to the PACS as a DICOM-SEG (see the module docstring)."""
        if label_tag != DefaultLabelTag.FINAL:
            return super().save_label(image_id, label_filename, label_tag, label_info, label_id)
        image_uri = self.get_image_uri(image_id)
        converted = ""
        if "".join(pathlib.Path(label_filename).suffixes) == ".bin":
            converted = label_filename = binary_to_image(image_uri, label_filename)
        try:
            names = {**self._label_names, **label_info_names(label_info.get("label_info"))}
            series_dir = pathlib.Path(self._datastore.image_path()) / image_id
            with tempfile.TemporaryDirectory() as tmp:
                seg_file = pathlib.Path(tmp) / "seg.dcm"
                seg_uid = write_dicom_seg(pathlib.Path(label_filename), series_dir, names, seg_file)
                stored_uid = dicom_web_upload_dcm(str(seg_file), self._client) or seg_uid
            values = _label_values(label_filename)
            info = dict(label_info)
            info["label_info"] = [{"name": names.get(v, f"label {v}"), "idx": v} for v in values]
            image_info = self.get_image_info(image_id)
            info.update(
                SeriesInstanceUID=stored_uid,
                Modality="SEG",
                PatientID=image_info.get("PatientID"),
                StudyInstanceUID=image_info.get("StudyInstanceUID"),
            )
            logger.info("stored DICOM-SEG %s for %s: %s", stored_uid, image_id, info["label_info"])
            saved = LocalDatastore.save_label(self, image_id, label_filename, label_tag, info)
        finally:
            if converted:
                os.unlink(converted)
        self._forget_label_queries()
        return saved

    def get_label_uri(self, label_id: str, label_tag: str, image_id: str = "") -> str:
        """Cached final label of ``image_id`` (or of image ``label_id``); converts SEG series ``label_id`` if new."""
        if label_tag != DefaultLabelTag.FINAL:
            return LocalDatastore.get_label_uri(self, label_id, label_tag)
        image_id = image_id or label_id
        cached = LocalDatastore.get_label_uri(self, image_id, label_tag)
        if cached and os.path.exists(cached):
            seg_uid = LocalDatastore.get_label_info(self, image_id, label_tag).get("SeriesInstanceUID")
            if label_id in (image_id, seg_uid):
                return cached
        if label_id == image_id:
            return ""  # an image without a cached label: nothing to convert without the SEG's series UID
        return self._convert_seg(label_id, image_id)

    def _convert_seg(self, seg_uid: str, image_id: str) -> str:
        """Download SEG series ``seg_uid``, decode it onto the grid of ``image_id`` and cache it as its final label."""
        seg_dir = os.path.realpath(os.path.join(self._datastore.label_path(DefaultLabelTag.FINAL), seg_uid))
        if not os.path.isdir(seg_dir) or not os.listdir(seg_dir):
            dicom_web_download_series(None, seg_uid, seg_dir, self._client, self._fetch_by_frame)
        seg_file = pathlib.Path(seg_dir) / sorted(os.listdir(seg_dir))[0]
        decoded = read_dicom_seg(seg_file)
        reference = sitk.ReadImage(self.get_image_uri(image_id))
        label = resample_to(decoded.image, reference)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, f"{image_id}.nii.gz")
            sitk.WriteImage(label, path, True)
            info = self._dicom_info(seg_uid)
            info["label_info"] = [{"name": name, "idx": idx} for idx, name in sorted(decoded.segments.items())]
            LocalDatastore.save_label(self, image_id, path, DefaultLabelTag.FINAL, info)
        logger.info("cached DICOM-SEG %s as the final label of %s: %s", seg_uid, image_id, info["label_info"])
        return LocalDatastore.get_label_uri(self, image_id, DefaultLabelTag.FINAL)


def _label_values(label_filename: str) -> list[int]:
    """The non-zero values of a label map file, ascending."""
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(sitk.Cast(sitk.ReadImage(label_filename), sitk.sitkUInt16))
    return sorted(int(v) for v in stats.GetLabels())


def create_dicomweb_datastore(studies: str, label_names: Mapping[int, str]) -> SegDICOMWebDatastore:
    """The datastore for ``--studies http(s)://.../dicom-web``, configured by MONAI Label's ``MONAI_LABEL_*`` settings.

    Like MONAI Label's own ``_init_dicomweb_datastore`` (user/password session, QIDO/WADO/STOW prefixes, cache path,
    search filter, fetch-by-frame) minus the dcmqi download; Google Cloud Healthcare sessions are not set up here.
    """
    session = None
    if settings.MONAI_LABEL_DICOMWEB_USERNAME and settings.MONAI_LABEL_DICOMWEB_PASSWORD:
        session = create_session_from_user_pass(
            settings.MONAI_LABEL_DICOMWEB_USERNAME, settings.MONAI_LABEL_DICOMWEB_PASSWORD
        )
    client = DICOMwebClientX(
        url=studies,
        session=session,
        qido_url_prefix=settings.MONAI_LABEL_QIDO_PREFIX,
        wado_url_prefix=settings.MONAI_LABEL_WADO_PREFIX,
        stow_url_prefix=settings.MONAI_LABEL_STOW_PREFIX,
    )
    cache_path = (settings.MONAI_LABEL_DICOMWEB_CACHE_PATH or "").strip()
    return SegDICOMWebDatastore(
        client=client,
        search_filter=settings.MONAI_LABEL_DICOMWEB_SEARCH_FILTER,
        cache_path=cache_path or None,
        fetch_by_frame=settings.MONAI_LABEL_DICOMWEB_FETCH_BY_FRAME,
        convert_to_nifti=settings.MONAI_LABEL_DICOMWEB_CONVERT_TO_NIFTI,
        label_names=label_names,
    )
