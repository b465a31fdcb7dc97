"""pytest-benchmark: slowdown under a shared CPU (issue 16), ours vs plain eager PyTorch.

Run: python -m pytest benchmarks/test_bench_shared_cpu.py -s
(or `robustops bench --only shared_cpu` for the table). One busy background process per
core is started and stopped by robustops.bench.shared_cpu; the measured slowdowns and
their ratio to eager's go into extra_info. Before timing, the corruption suite's output
is checked to be the same with the call-level grain (1 thread for CIFAR-sized batches)
as with every thread.
"""
import torch

from robustops.bench import shared_cpu
from robustops.bench.corruptions import smooth_images
from robustops.eval.corruptions import CORRUPTIONS, corrupt
from robustops.intra_op_threads import intra_op_threads


def test_shared_cpu_slowdown_vs_eager(benchmark, monkeypatch):
    import robustops.eval.corruptions as corruptions

    x = smooth_images(16)
    ours = [corrupt(x, n, 3, seed=0) for n in CORRUPTIONS]
    monkeypatch.setattr(corruptions, "threads_for", lambda n, g=None: torch.get_num_threads())
    with intra_op_threads(2):
        every = [corrupt(x, n, 3, seed=0) for n in CORRUPTIONS]
    monkeypatch.undo()
    for a, b in zip(ours, every):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)

    res = benchmark.pedantic(lambda: shared_cpu.measure(repeats=3), rounds=1, iterations=1)
    for name, v in res.items():
        benchmark.extra_info[name] = v
