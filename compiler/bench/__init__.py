"""Timing a model: where it runs (`devices`: this machine, ssh, aarch64 under qemu), `edgec bench` and
`edgec compare` (`benchmarking`), and `edgec check`'s regression verdict and CI files (`regression`)."""
