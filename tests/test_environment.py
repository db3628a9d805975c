"""The pinned stack works together: MONAI Label imports, and MONAI's Spacingd survives MONAI Label's request dict."""

from __future__ import annotations

import importlib

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Spacingd


def test_monailabel_app_imports_with_the_pinned_pydicom() -> None:
    # pydicom 3 breaks this import (pydicom-seg 0.4.1 needs pydicom._storage_sopclass_uids).
    module = importlib.import_module("monailabel.app")
    assert hasattr(module, "app")
    importlib.import_module("monailabel.datastore.dicom")


def test_spacingd_with_monailabel_image_path_key() -> None:
    # MONAI Label's BasicInferTask adds data["image_path"] = "<str>"; MONAI 1.6's Spacingd calls .update() on every
    # "image_*" key and crashes. The pinned MONAI must pass this.
    image = MetaTensor(torch.zeros(1, 8, 8, 4), affine=torch.diag(torch.tensor([1.0, 1.0, 2.5, 1.0])))
    data = {"image": image, "image_path": "/tmp/img.nii.gz"}
    out = Spacingd(keys="image", pixdim=(2.0, 2.0, 2.0))(data)
    assert out["image_path"] == "/tmp/img.nii.gz"
    np.testing.assert_allclose(np.diag(np.asarray(out["image"].affine))[:3], (2.0, 2.0, 2.0))
