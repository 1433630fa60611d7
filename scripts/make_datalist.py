"""Discover BraTS cases under --root, validate them and write a MONAI datalist with seeded splits.

Usage::

    python scripts/make_datalist.py --root /path/to/BraTS --output /path/datalist.json [--seed 0]
        [--fractions 0.7 0.15 0.15] [--skip-invalid] [--rejected rejected.json] [--no-validate] [--overwrite]

See :mod:`robustseg.data.cli`.
"""

from __future__ import annotations

import sys

from robustseg.data.cli import main

if __name__ == "__main__":
    sys.exit(main())
