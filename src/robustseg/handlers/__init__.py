"""robustseg.handlers."""
