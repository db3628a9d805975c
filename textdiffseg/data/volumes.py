"""Read one CT or label volume the way the scripts and figures look at it: channel first, in RAS orientation."""

from __future__ import annotations

from pathlib import Path

from monai.data import MetaTensor
from monai.transforms import EnsureChannelFirst, LoadImage, Orientation


def load_ras(path: str | Path) -> MetaTensor:
    """The volume at ``path`` (NIfTI, or a DICOM series folder) as a ``(1, X, Y, Z)`` tensor with RAS axes.

    Its affine says where each voxel lies, so :class:`textdiffseg.inference.Segmenter` takes it as it is.
    """
    return Orientation(axcodes="RAS")(EnsureChannelFirst()(LoadImage(image_only=True)(str(path))))
