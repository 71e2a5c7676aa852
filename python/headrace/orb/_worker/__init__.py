"""headrace's stand-in for orb-worker's ``worker`` package (see ``headrace.orb.shim``)."""
