"""Utilities shared by the estimators: input validation and seeding."""

from .validation import (
    check_image_shape,
    check_images,
    check_labels,
    is_path_array,
    read_images,
)

__all__ = ["check_images", "check_image_shape", "check_labels", "is_path_array",
           "read_images"]
