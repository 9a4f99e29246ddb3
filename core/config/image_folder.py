"""The `image_folder` data section (D2L 13.13-13.14): labelled images in class folders."""

from __future__ import annotations

IMAGE_FOLDER_DATA: tuple = ()
