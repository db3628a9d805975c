"""Diffusion: MONAI's DDIM scheduler, training targets (eq. 3) and few-step sampling with ensembles."""
