"""BraTS discovery and datalists, input validation, label canonicalisation and the phantom generator."""

from __future__ import annotations

from robustseg.data import datalist, discovery, layouts, naming, transforms, validation

__all__ = ["datalist", "discovery", "layouts", "naming", "transforms", "validation"]
