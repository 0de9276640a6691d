"""GluonCV import-path compatibility: ``transforms.experimental.{image,bbox}``.

``experimental.image.random_color_distort`` and ``experimental.bbox.random_crop_with_constraints``
are the same functions as in ``transforms.image`` and ``transforms.bbox``.
"""
from .. import bbox, image  # noqa: F401
