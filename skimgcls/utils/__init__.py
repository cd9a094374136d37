"""Utilities shared by the estimators: input validation and seeding."""

from .validation import (
    as_path_array,
    check_image_shape,
    check_images,
    check_labels,
    is_path_array,
    read_images,
)

__all__ = ["as_path_array", "check_images", "check_image_shape", "check_labels",
           "is_path_array", "read_images"]
