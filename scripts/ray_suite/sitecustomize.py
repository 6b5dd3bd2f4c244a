"""Every Python started with this folder on ``PYTHONPATH`` (the cluster's workers too) sees
``ray`` as nbray."""

import nbray_as_ray  # noqa: F401
