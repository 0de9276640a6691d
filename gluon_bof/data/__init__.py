"""Datasets, transforms and mixup for detection."""
