"""The edgec driver layer: CLI, compile driver, export, calibration, reports (the only layer doing file I/O)."""
