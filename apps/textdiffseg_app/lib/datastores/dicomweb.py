"""DICOMweb (e.g. Orthanc) datastore that stores final labels as DICOM-SEG written by pydicom-seg, offline.

MONAI Label 0.8.5's ``DICOMWebDatastore`` downloads dcmqi (``itkimage2segimage``) from GitHub when the app starts
and converts labels with it; this subclass never needs it. Differences, all on the ``final`` tag:

* ``save_label`` writes the label map as a DICOM-SEG of the image's series with
  :func:`textdiffseg.data.dicom_seg.write_dicom_seg` (segment number = label value, SegmentLabel = the
  ``label_info`` name for that value, else the vocabulary name; ``MANUAL``: an annotator submitted it; the CT's
  Frame of Reference), STOWs it, keeps the NIfTI in the local cache as the final label with ``label_info`` =
  ``[{"name", "idx"}]`` and the SEG's SeriesInstanceUID, and forgets the cached "which images are labelled" query
  so ``/datastore`` counts it at once.
* Which images are labelled (``/datastore`` stats, the unlabelled images of active learning) is per image: a CT with
  three SEGs is one labelled image. A SEG whose metadata cannot be read is left out with a log line naming it.
* ``datalist`` (what training reads) asks the PACS afresh (new SEGs from anyone are trained on) and builds one label
  map per CT from *all* its SEGs (:func:`textdiffseg.data.dicom_seg.training_target`: every segment read as its own
  mask, overlaps allowed; per structure the newest SEG's segment, manual before automatic; where kept segments
  overlap the smaller one wins), cached as ``<image>.nii.gz`` with ``label_info`` and the SEGs it came from. A SEG
  that cannot be downloaded or decoded is skipped with a log line naming it: one bad SEG never fails the list.
* ``get_label_uri`` returns that cached label (building it from the image's SEGs when missing).
"""

from __future__ import annotations

import logging
import os
import pathlib
import shutil
import tempfile
import threading
import time
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
from pydicom.dataset import Dataset

from textdiffseg.data.dicom_seg import SegmentationRead, read_dicom_seg, training_target, write_dicom_seg
from textdiffseg.data.vocabulary import PromptVocabulary
from textdiffseg.label_info import label_info_names

logger = logging.getLogger(__name__)

SEG_SERIES_KEY = "seg_series"  # label info: the SEG series a cached final label was built from


class SegDICOMWebDatastore(DICOMWebDatastore):
    """``DICOMWebDatastore`` whose final labels are DICOM-SEG written and read with pydicom-seg."""

    def __init__(
        self,
        *args: Any,
        label_names: Mapping[int, str] | None = None,
        vocabulary: PromptVocabulary | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._label_names = dict(label_names or {})
        self._vocabulary = vocabulary or PromptVocabulary.load()
        self._seg_lock = threading.Lock()
        self._seg_cache: tuple[float, dict[str, list[str]]] | None = None

    def _forget_label_queries(self) -> None:
        """Drop the cached QIDO answers (2 h TTL in MONAI Label) about which images have a SEG."""
        for method in (DICOMWebDatastore.get_labeled_images, DICOMWebDatastore.list_images):
            cache = getattr(method, "cache", None)
            if cache is not None:
                cache.clear()
        with self._seg_lock:
            self._seg_cache = None

    def seg_series(self) -> dict[str, list[str]]:
        """``{image series: [SEG series referencing it]}`` for the listed images (cached like MONAI Label's answer).

        A SEG whose metadata cannot be read, or that references no listed image, is left out with a log line.
        """
        with self._seg_lock:
            if self._seg_cache and time.monotonic() - self._seg_cache[0] < settings.MONAI_LABEL_DICOMWEB_CACHE_EXPIRY:
                return self._seg_cache[1]
        images = set(self.list_images())
        found: dict[str, list[str]] = {}
        for answer in self._client.search_for_series(search_filters={"Modality": "SEG"}):
            seg = Dataset.from_json(answer)
            seg_uid = str(seg.get("SeriesInstanceUID", "?"))
            try:
                meta = Dataset.from_json(self._client.retrieve_series_metadata(str(seg.StudyInstanceUID), seg_uid)[0])
                referenced = str(meta.ReferencedSeriesSequence[0].SeriesInstanceUID)
            except Exception as err:  # noqa: BLE001 - any PACS answer or content problem: leave this SEG out
                logger.warning(
                    "DICOM-SEG %s left out: its metadata cannot be read (%s: %s)", seg_uid, type(err).__name__, err
                )
                continue
            if referenced not in images:
                logger.warning(
                    "DICOM-SEG %s left out: it references series %s, not a listed image", seg_uid, referenced
                )
                continue
            found.setdefault(referenced, []).append(seg_uid)
        with self._seg_lock:
            self._seg_cache = (time.monotonic(), found)
        return found

    def get_labeled_images(self, label_tag: str | None = None, labels: list[str] | None = None) -> list[str]:
        """Images with at least one SEG, each once (MONAI Label listed an image once per SEG: "Annotated: 200%")."""
        return list(self.seg_series())

    def get_unlabeled_images(self, label_tag: str | None = None, labels: list[str] | None = None) -> list[str]:
        """Listed images without any SEG."""
        labeled = set(self.seg_series())
        return [image for image in self.list_images() if image not in labeled]

    def datalist(self, full_path: bool = True) -> list[dict[str, Any]]:
        """Training pairs: asks the PACS afresh, builds each labelled image's label map from all its SEGs."""
        self._forget_label_queries()
        segs = self.seg_series()
        for image_id in set(LocalDatastore.get_labeled_images(self)) - set(segs):
            logger.info("final label of %s removed: no DICOM-SEG references it any more", image_id)
            label_uri = LocalDatastore.get_label_uri(self, image_id, DefaultLabelTag.FINAL)
            if label_uri and os.path.exists(label_uri):
                os.unlink(label_uri)
            self._datastore.objects[image_id].labels.pop(DefaultLabelTag.FINAL, None)
        for image_id, seg_uids in segs.items():
            try:
                self._final_label(image_id, seg_uids)
            except Exception as err:  # noqa: BLE001 - the image itself cannot be fetched: train on the others
                logger.warning("image %s left out of training: %s: %s", image_id, type(err).__name__, err)
        return LocalDatastore.datalist(self, full_path)

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
                **{SEG_SERIES_KEY: [stored_uid]},
            )
            logger.info("stored DICOM-SEG %s for %s: %s", stored_uid, image_id, info["label_info"])
            saved = LocalDatastore.save_label(self, image_id, label_filename, label_tag, info)
        finally:
            if converted:
                os.unlink(converted)
        self._forget_label_queries()
        return saved

    def get_label_uri(self, label_id: str, label_tag: str, image_id: str = "") -> str:
        """The cached final label of ``image_id`` (or of image ``label_id``), built from its SEGs when missing."""
        if label_tag != DefaultLabelTag.FINAL:
            return LocalDatastore.get_label_uri(self, label_id, label_tag)
        image_id = image_id or label_id
        cached = LocalDatastore.get_label_uri(self, image_id, label_tag)
        if cached and os.path.exists(cached):
            return cached
        seg_uids = self.seg_series().get(image_id) or ([label_id] if label_id != image_id else [])
        return self._final_label(image_id, seg_uids) if seg_uids else ""

    def _final_label(self, image_id: str, seg_uids: list[str]) -> str:
        """The cached label map of ``image_id`` built from ``seg_uids`` (rebuilt when that set changed); ``""``
        when none of them gives a voxel on the image."""
        info = LocalDatastore.get_label_info(self, image_id, DefaultLabelTag.FINAL) if self._has_final(image_id) else {}
        cached = LocalDatastore.get_label_uri(self, image_id, DefaultLabelTag.FINAL) if info else ""
        if cached and os.path.exists(cached) and sorted(info.get(SEG_SERIES_KEY) or []) == sorted(seg_uids):
            return cached
        reads = [read for read in (self._read_seg(uid, image_id) for uid in seg_uids) if read is not None]
        reference = sitk.ReadImage(self.get_image_uri(image_id))
        target = training_target(reads, reference, self._vocabulary) if reads else None
        if target is None:
            logger.warning("no usable DICOM-SEG segment for %s (of %s)", image_id, seg_uids)
            return ""
        for note in target.notes:
            logger.info("final label of %s: %s", image_id, note)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, f"{image_id}.nii.gz")
            sitk.WriteImage(target.label, path, True)
            newest = max(reads, key=lambda r: r.created)
            info = self._dicom_info(newest.series_uid)
            info["label_info"] = [{"name": name, "idx": idx} for idx, name in sorted(target.names.items())]
            info[SEG_SERIES_KEY] = sorted(seg_uids)
            LocalDatastore.save_label(self, image_id, path, DefaultLabelTag.FINAL, info)
        logger.info("final label of %s from DICOM-SEG %s: %s", image_id, sorted(seg_uids), info["label_info"])
        return LocalDatastore.get_label_uri(self, image_id, DefaultLabelTag.FINAL)

    def _has_final(self, image_id: str) -> bool:
        item = self._datastore.objects.get(image_id)
        return bool(item and item.labels.get(DefaultLabelTag.FINAL))

    def _read_seg(self, seg_uid: str, image_id: str) -> SegmentationRead | None:
        """SEG series ``seg_uid`` downloaded (once) and decoded; ``None`` (logged, naming it) if it cannot be."""
        seg_dir = os.path.realpath(os.path.join(self._datastore.label_path(DefaultLabelTag.FINAL), seg_uid))
        try:
            if not os.path.isdir(seg_dir) or not os.listdir(seg_dir):
                dicom_web_download_series(None, seg_uid, seg_dir, self._client, self._fetch_by_frame)
            files = sorted(os.listdir(seg_dir))
            if not files:
                raise FileNotFoundError("the PACS returned no instance")
            read = read_dicom_seg(pathlib.Path(seg_dir) / files[0])
            if read.referenced_series_uid != image_id:
                raise ValueError(f"it references series {read.referenced_series_uid}")
            return read
        except Exception as err:  # noqa: BLE001 - any unreadable SEG content: skip this SEG, keep the others
            logger.warning(
                "DICOM-SEG %s of image %s skipped: %s: %s", seg_uid, image_id, type(err).__name__, str(err)[:300]
            )
            shutil.rmtree(seg_dir, ignore_errors=True)
            return None


def _label_values(label_filename: str) -> list[int]:
    """The non-zero values of a label map file, ascending."""
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(sitk.Cast(sitk.ReadImage(label_filename), sitk.sitkUInt16))
    return sorted(int(v) for v in stats.GetLabels())


def create_dicomweb_datastore(
    studies: str, label_names: Mapping[int, str], vocabulary: PromptVocabulary | None = None
) -> SegDICOMWebDatastore:
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
        vocabulary=vocabulary,
    )
