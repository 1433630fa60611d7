"""robustseg.evaluation."""
