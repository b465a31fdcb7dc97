"""PartImageNet's COCO part masks against the COCO API itself (pycocotools' COCO.annToMask).

Random polygons (float coordinates, concave and self-intersecting ones too, several
per annotation) and random RLE masks (compressed by pycocotools, and uncompressed run
lengths as iscrowd annotations carry them) must give the COCO API's masks pixel for
pixel; malformed RLE must be refused before pycocotools (which trusts its input) sees it.
"""
import json
import sys

import numpy as np
import pytest

from robustops.data.part_imagenet import decode_rle, rasterize_segmentation

coco = pytest.importorskip("pycocotools.coco")
coco_mask = pytest.importorskip("pycocotools.mask")

H, W = 23, 31


def _uncompressed_counts(mask: np.ndarray):
    """COCO's uncompressed RLE counts: column-major run lengths, starting with zeros."""
    flat = np.asfortranarray(mask).reshape(-1, order="F").astype(np.int8)
    change = np.flatnonzero(np.diff(np.concatenate(([0], flat, [1 - flat[-1]]))))
    return np.diff(np.concatenate(([0], change))).tolist()


def _segmentations(rs):
    segs = []
    for k in range(60):
        n_polys = 1 + k % 3
        polys = []
        for _ in range(n_polys):
            n = rs.randint(3, 9)
            xy = rs.rand(n, 2) * [W + 4, H + 4] - 2           # some vertices outside the image
            polys.append([round(float(v), 2) for v in xy.reshape(-1)])
        segs.append(polys)
    for k in range(40):
        mask = rs.rand(H, W) < rs.rand()
        if k == 0:
            mask[:] = False
        if k == 1:
            mask[:] = True
        rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        if k % 2:
            segs.append({"size": [H, W], "counts": rle["counts"].decode()})
        else:
            segs.append({"size": [H, W], "counts": _uncompressed_counts(mask)})
    return segs


def _coco_api_masks(tmp_path, segs):
    """annToMask of each segmentation, through a COCO annotation file."""
    data = {"images": [{"id": 1, "file_name": "a.png", "height": H, "width": W}],
            "categories": [{"id": 1, "name": "part", "supercategory": "thing"}],
            "annotations": [{"id": i + 1, "image_id": 1, "category_id": 1, "segmentation": s,
                             "iscrowd": int(isinstance(s, dict)), "area": 1.0,
                             "bbox": [0, 0, 1, 1]} for i, s in enumerate(segs)]}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    api = coco.COCO(str(path))
    return [api.annToMask(api.anns[i + 1]).astype(bool) for i in range(len(segs))]


def test_masks_equal_coco_api(tmp_path):
    segs = _segmentations(np.random.RandomState(3))
    reference = _coco_api_masks(tmp_path, segs)
    for k, (seg, ref) in enumerate(zip(segs, reference)):
        ours = rasterize_segmentation(seg, H, W)
        assert ours.dtype == bool and ours.shape == (H, W)
        assert np.array_equal(ours, ref), f"segmentation {k} ({type(seg).__name__}): " \
            f"{int((ours != ref).sum())} pixels differ from the COCO API's"
    # The polygons are not trivial: they cover many different areas.
    assert len({int(m.sum()) for m in reference[:60]} - {0}) > 30


def test_uncompressed_and_compressed_rle_agree():
    rs = np.random.RandomState(5)
    for _ in range(20):
        mask = rs.rand(H, W) < 0.4
        compressed = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"]
        for counts in (compressed, compressed.decode(), _uncompressed_counts(mask)):
            assert np.array_equal(decode_rle({"size": [H, W], "counts": counts}, H, W), mask)


@pytest.mark.parametrize("counts, message", [
    ([5, 3], "add up to 8 pixels"),                      # too few: pycocotools would pad
    ([H * W, 7], "add up to"),                           # too many: would overrun the buffer
    ([-1, H * W + 1], "must be >= 0"),
    ("a~", "invalid character"),
    ("ab", "ends inside a number"),
])
def test_malformed_rle_refused(counts, message):
    with pytest.raises(ValueError, match=message):
        decode_rle({"size": [H, W], "counts": counts}, H, W)


def test_without_pycocotools_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    with pytest.raises(ImportError, match="pip install pycocotools"):
        rasterize_segmentation([[1, 1, 5, 1, 5, 5]], H, W)
