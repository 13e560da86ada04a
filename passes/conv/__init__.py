"""Convolutional graphs: which channels can go (discovery) and removing them (edit)."""
