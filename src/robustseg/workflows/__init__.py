"""robustseg.workflows."""
