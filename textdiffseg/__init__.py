"""TextDiffSeg: text-guided latent diffusion segmentation of 3D CT (library; knows nothing of MONAI Label)."""

__version__ = "0.1.0"
