"""The call-level grain size: corruptions ask for threads by the work of one op, leave
torch's thread count as they found it, and give the same result whatever it is."""
import pytest
import torch

from robustops.eval.corruptions import CORRUPTIONS, corrupt
from robustops.intra_op_threads import SMALL_OP_GRAIN, intra_op_threads, threads_for


def test_threads_for_scales_with_work_and_stays_in_bounds(monkeypatch):
    import robustops.intra_op_threads as T

    monkeypatch.setattr(T, "free_cores", lambda enough=None: None)  # not the machine's load
    with intra_op_threads(2):
        assert threads_for(0) == 1
        assert threads_for(SMALL_OP_GRAIN - 1) == 1
        assert threads_for(2 * SMALL_OP_GRAIN) == 2
        assert threads_for(100 * SMALL_OP_GRAIN) == 2  # never more than torch's count
    with intra_op_threads(1):
        assert threads_for(100 * SMALL_OP_GRAIN) == 1


def test_intra_op_threads_restores_the_count_even_after_an_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="inside"):
        with intra_op_threads(1):
            assert torch.get_num_threads() == 1
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("name", ["glass_blur", "snow", "gaussian_noise"])
def test_corrupt_runs_small_batches_on_one_thread_and_restores_the_count(name, monkeypatch):
    from robustops.eval.corruptions import base

    seen = []
    fn = base.REGISTRY[name]
    monkeypatch.setitem(base.REGISTRY, name,
                        lambda x, s, rng: (seen.append(torch.get_num_threads()), fn(x, s, rng))[1])
    x = torch.rand(4, 3, 16, 16)
    with intra_op_threads(2):
        corrupt(x, name, 3, seed=1)
        assert torch.get_num_threads() == 2
    assert seen == [1]  # 4 x 3 x 16 x 16: under CORRUPTION_GRAIN


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_corruption_results_do_not_depend_on_the_thread_count(name, monkeypatch):
    # A batch big enough for 2 threads under a grain of 1 element vs the default (1 thread).
    x = torch.rand(3, 3, 16, 16)
    one = corrupt(x, name, 4, seed=3)
    import robustops.eval.corruptions as corruptions

    monkeypatch.setattr(corruptions, "threads_for", lambda n, g=None: 2)
    with intra_op_threads(2):
        two = corrupt(x, name, 4, seed=3)
    torch.testing.assert_close(two, one, rtol=0, atol=1e-6)


def test_corrupt_refuses_nan_inf_and_out_of_range_in_one_check():
    for bad in (float("nan"), float("inf"), -float("inf"), 1.5, -0.1):
        x = torch.rand(2, 3, 8, 8)
        x[1, 2, 3, 4] = bad
        with pytest.raises(ValueError, match="finite and in \\[0, 1\\]"):
            corrupt(x, "contrast", 1)


def test_threads_for_leaves_the_cores_busy_processes_take(monkeypatch):
    import robustops.intra_op_threads as T

    with intra_op_threads(2):
        monkeypatch.setattr(T, "free_cores", lambda enough=None: 0)
        assert threads_for(100 * SMALL_OP_GRAIN) == 1
        monkeypatch.setattr(T, "free_cores", lambda enough=None: 1)
        assert threads_for(100 * SMALL_OP_GRAIN) == 1
        monkeypatch.setattr(T, "free_cores", lambda enough=None: None)  # unknown: by the work alone
        assert threads_for(100 * SMALL_OP_GRAIN) == 2


def test_free_cores_sees_busy_background_processes():
    from robustops.bench.shared_cpu import busy_background
    from robustops.bench.timing import usable_cores
    from robustops.intra_op_threads import free_cores

    if free_cores() is None:
        pytest.skip("free cores cannot be told here (not Linux, or a cpuset)")
    with busy_background(usable_cores()):
        import time

        time.sleep(0.3)
        assert free_cores() == 0


def test_free_cores_stops_reading_once_enough_cores_are_free(monkeypatch):
    import robustops.intra_op_threads as T

    readings = iter([1, 2, 0])
    calls = []
    monkeypatch.setattr(T, "_free_cores_once", lambda: calls.append(1) or next(readings))
    assert T.free_cores(samples=3, enough=2) == 2 and len(calls) == 2
    readings, calls[:] = iter([1, 0, 1]), []
    assert T.free_cores(samples=3, enough=2) == 1 and len(calls) == 3  # the best of three
