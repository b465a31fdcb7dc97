"""The imagecorruptions peer (shimmed for the current stack), shared with the benchmarks."""
from robustops.bench.imagecorruptions_peer import corrupt_uint8, load, reference  # noqa: F401
