"""The market maker: drives the hot-path kernels from the sequenced stream."""
