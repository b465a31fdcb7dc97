"""Host syncs of robust_accuracy: a bounded number per batch, as its docstring states."""

from robustops.attacks import FGSM, PGD
from robustops.attacks.base import DEFAULT_CHECK_EVERY
from robustops.eval import robust_accuracy
from robustops.sync_counter import SyncCounter

STEPS, BATCH = 6, 12


def _syncs(model, x, y, device_syncs, n_batches, **kwargs):
    attacks = [PGD(model, eps=0.06, steps=STEPS), FGSM(model, eps=0.06)]
    with SyncCounter() as counter:
        result = robust_accuracy(model, (x[:n_batches * BATCH], y[:n_batches * BATCH]), attacks,
                                 batch_size=BATCH, checks="off", **kwargs)
    return device_syncs(counter), result


def _per_batch(model, x, y, device_syncs, **kwargs):
    """Syncs per batch: the difference between 4 and 2 batches (the per-evaluation
    reads, the first batch's hygiene checks and the final read, cancel), halved."""
    two, _ = _syncs(model, x, y, device_syncs, 2, **kwargs)
    four, result = _syncs(model, x, y, device_syncs, 4, **kwargs)
    assert 0 < result.worst_case < 1
    return (len(four) - len(two)) / 2, four


def test_without_early_exit_one_sync_per_attack_and_batch(digits_batch, device_syncs):
    model, x, y = digits_batch
    per_batch, events = _per_batch(model, x, y, device_syncs, early_exit=False, progress=False)
    assert per_batch == 2  # one `nonzero` per attack: the samples it attacks
    own = [e for e in events if "robust_accuracy.py" in e.where]
    assert len(own) == 4 * 2 + 1  # and the counts, read once at the end
    assert [e.kind for e in own].count("tolist") == 1


def test_with_early_exit_syncs_stay_within_the_documented_bound(digits_batch, device_syncs):
    model, x, y = digits_batch
    per_batch, _ = _per_batch(model, x, y, device_syncs, early_exit=True, progress=False)
    # A * (R + R * floor(steps / check_every)) with R = 1 round: PGD's checks, FGSM none.
    bound = 2 * 1 + STEPS // DEFAULT_CHECK_EVERY + 1 // DEFAULT_CHECK_EVERY
    assert 2 <= per_batch <= bound


def test_a_hidden_progress_bar_reads_nothing(digits_batch, device_syncs):
    # Under pytest the output is not a terminal: tqdm hides the bar, and its read goes.
    model, x, y = digits_batch
    quiet, _ = _per_batch(model, x, y, device_syncs, early_exit=False, progress=False)
    hidden, _ = _per_batch(model, x, y, device_syncs, early_exit=False, progress=True)
    assert hidden == quiet
