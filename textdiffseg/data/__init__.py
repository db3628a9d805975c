"""Datasets: the synthetic CT phantom, the prompt vocabulary, and loaders for MSD / KiTS folders."""
