"""Small end-to-end applications (``bpsn-ext demo``)."""

from bpsn_ext.apps.demo import run_demo

__all__ = ["run_demo"]
