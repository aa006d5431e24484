"""Datasets, file formats, preprocessing and the synthetic KITTI world."""
