"""Environment variables the core needs set before torch starts (torch-free: the command line
sets them at start-up, before any import of torch)."""

# cuBLAS computes matrix products deterministically only with this set before it starts in the
# process (see `runtime.reproducible`).
CUBLAS_CONFIG = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
