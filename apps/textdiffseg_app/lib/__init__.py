"""TextDiffSeg MONAI Label app package (MONAI Label requires it to be named ``lib``)."""
