"""PartImageNet-format loader on a tiny fixture: masks from polygons and RLE, labels, errors."""
import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image

from robustops.data.part_imagenet import PartImageNetDataset, decode_rle, load_part_annotations

coco_mask = pytest.importorskip("pycocotools.mask")  # the masks' decoder

H, W = 8, 10


def rle_counts(mask: np.ndarray):
    """COCO's uncompressed RLE of a bool mask: column-major runs, zeros first."""
    flat = mask.T.reshape(-1)
    counts, cur, run = [], False, 0
    for v in flat:
        if bool(v) != cur:
            counts.append(run)
            cur, run = bool(v), 0
        run += 1
    counts.append(run)
    return counts


def rle_string(mask: np.ndarray) -> str:
    """COCO's compressed RLE string of a bool mask, by pycocotools."""
    return coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()


def region(r0, r1, c0, c1):
    m = np.zeros((H, W), dtype=bool)
    m[r0:r1, c0:c1] = True
    return m


def fixture_json():
    """4 images: two 'Quadruped' (folder n01), one 'Car' (n02), one unannotated n01 image."""
    return {
        "images": [{"id": 1, "file_name": "n01_1.png", "height": H, "width": W},
                   {"id": 2, "file_name": "n01_2.png", "height": H, "width": W},
                   {"id": 7, "file_name": "n02_1.png", "height": H, "width": W},
                   {"id": 9, "file_name": "n01_3.png", "height": H, "width": W}],
        "categories": [{"id": 0, "name": "Quadruped Head", "supercategory": "Quadruped"},
                       {"id": 1, "name": "Quadruped Body", "supercategory": "Quadruped"},
                       {"id": 2, "name": "Car Tire", "supercategory": "Car"}],
        "annotations": [
            # Image 1: body rectangle (polygon), then the head polygon drawn over part of it.
            {"id": 10, "image_id": 1, "category_id": 1,
             "segmentation": [[1, 1, 6, 1, 6, 4, 1, 4]]},
            {"id": 11, "image_id": 1, "category_id": 0, "segmentation": [[5, 2, 8, 2, 8, 3, 5, 3]]},
            # Image 2: body as uncompressed RLE.
            {"id": 12, "image_id": 2, "category_id": 1,
             "segmentation": {"counts": rle_counts(region(2, 5, 3, 7)), "size": [H, W]}},
            # Image 7: tire as compressed RLE.
            {"id": 13, "image_id": 7, "category_id": 2,
             "segmentation": {"counts": rle_string(region(4, 8, 0, 3)),
                              "size": [H, W]}},
        ],
    }


def write_fixture(root, data=None, nested=True):
    img_dir = root / "images" / "train"
    for i, name in enumerate(["n01_1.png", "n01_2.png", "n02_1.png", "n01_3.png"]):
        folder = img_dir / name.split("_")[0] if nested else img_dir
        folder.mkdir(parents=True, exist_ok=True)
        arr = np.full((H, W, 3), 40 * i, dtype=np.uint8)
        Image.fromarray(arr).save(folder / name)
    (root / "annotations").mkdir(exist_ok=True)
    path = root / "annotations" / "train.json"
    path.write_text(json.dumps(fixture_json() if data is None else data))
    return path


def test_masks_labels_and_classes(tmp_path):
    write_fixture(tmp_path)
    ds = PartImageNetDataset(tmp_path, "train")
    assert len(ds) == 4 and ds.num_parts == 3
    assert ds.class_names == ("Quadruped", "Car")
    assert ds.part_names == ("Quadruped Head", "Quadruped Body", "Car Tire")
    assert ds.labels.tolist() == [0, 0, 1, 0]  # image 9 takes its folder's class
    assert ds.has_mask.tolist() == [True, True, True, False]
    assert ds.class_part_matrix().tolist() == [[False, True, True, False],
                                               [False, False, False, True]]
    x, y, m = ds[0]
    assert x.shape == (3, H, W) and x.dtype == torch.float32 and int(y) == 0
    expected = np.zeros((H, W), dtype=np.int64)
    expected[1:4, 1:6] = 2   # body: the COCO API's rasterisation of the polygon
    expected[2:3, 5:8] = 1   # head drawn later, over the body
    assert m.tolist() == expected.tolist()
    _, _, m2 = ds[1]
    assert m2.tolist() == (region(2, 5, 3, 7) * 2).tolist()
    _, y3, m3 = ds[2]
    assert int(y3) == 1 and m3.tolist() == (region(4, 8, 0, 3) * 3).tolist()
    _, _, m4 = ds[3]
    assert bool((m4 == -1).all())  # no annotation: no mask


def test_resize_packed_and_flat_layout(tmp_path):
    write_fixture(tmp_path, nested=False)
    ds = PartImageNetDataset(tmp_path, "train", image_size=4, packed=True)
    x, t = ds[0]
    assert x.shape == (3, 4, 4) and t.shape == (17,) and int(t[0]) == 0
    assert set(t[1:].tolist()) <= {0, 1, 2}


def test_rle_decoders_agree():
    mask = region(1, 6, 2, 9)
    mask[3, 4] = False
    counts = rle_counts(mask)
    assert decode_rle({"counts": counts, "size": [H, W]}, H, W).tolist() == mask.tolist()
    assert decode_rle({"counts": rle_string(mask), "size": [H, W]}, H, W).tolist() == \
        mask.tolist()


def _mutate(fn):
    data = copy.deepcopy(fixture_json())
    fn(data)
    return data


BAD = {
    "missing key": (lambda d: d.pop("categories"), "missing top-level key 'categories'"),
    "unknown image": (lambda d: d["annotations"][0].update(image_id=99),
                      r"annotations\[0\] \(id 10\): refers to image_id 99"),
    "unknown category": (lambda d: d["annotations"][1].update(category_id=5),
                         r"annotations\[1\] \(id 11\): refers to category_id 5"),
    "odd polygon": (lambda d: d["annotations"][0].update(segmentation=[[1, 1, 6, 1, 6]]),
                    "polygon 0 has an odd number of coordinates"),
    "two points": (lambda d: d["annotations"][0].update(segmentation=[[1, 1, 6, 1]]),
                   "polygon 0 has 2 points; a polygon needs at least 3"),
    "nan coordinate": (lambda d: d["annotations"][0].update(segmentation=[[1, 1, 6, "x", 3, 3]]),
                       "flat list of finite numbers"),
    "rle size": (lambda d: d["annotations"][2]["segmentation"].update(size=[H, W + 1]),
                 r"RLE size \[8, 11\] does not match the image's \[height, width\] = \[8, 10\]"),
    "rle counts": (lambda d: d["annotations"][2]["segmentation"]["counts"].append(3),
                   "RLE counts add up to 83 pixels, the image has 8 x 10 = 80"),
    "rle string": (lambda d: d["annotations"][3]["segmentation"].update(counts="a~"),
                   "compressed RLE string has an invalid character"),
    "segmentation type": (lambda d: d["annotations"][0].update(segmentation="oops"),
                          "segmentation must be a list of polygons or an RLE dict"),
    "duplicate image": (lambda d: d["images"][1].update(id=1),
                        r"images\[1\]: duplicate image id 1"),
    "image size": (lambda d: d["images"][0].update(height=0), "'height' must be an int >= 1"),
    "no supercategory": (lambda d: d["categories"][0].pop("supercategory"),
                         r"categories\[0\]: missing key 'supercategory'"),
    "mixed classes": (lambda d: d["annotations"].append(
        {"id": 14, "image_id": 1, "category_id": 2, "segmentation": [[0, 0, 1, 0, 1, 1]]}),
        r"image id 1 \(n01_1.png\) has parts of several classes \['Car', 'Quadruped'\]"),
    "orphan image": (lambda d: d["images"].append(
        {"id": 20, "file_name": "n05_1.png", "height": H, "width": W}),
        r"image id 20 \(n05_1.png\) has no part annotation and no other image of its folder"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_malformed_annotations_raise_clear_errors(tmp_path, case):
    fn, match = BAD[case]
    path = write_fixture(tmp_path, _mutate(fn))
    with pytest.raises(ValueError, match=match) as info:
        PartImageNetDataset(tmp_path, "train")
    assert str(path) in str(info.value)


def test_file_errors(tmp_path):
    path = write_fixture(tmp_path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="train.json is not valid JSON"):
        load_part_annotations(path)
    with pytest.raises(FileNotFoundError, match="the 'val' annotation file not found"):
        PartImageNetDataset(tmp_path, "val")
    write_fixture(tmp_path)
    (tmp_path / "images" / "train" / "n01" / "n01_2.png").unlink()
    ds = PartImageNetDataset(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="image 'n01_2.png'"):
        ds[1]
    Image.fromarray(np.zeros((H + 1, W, 3), dtype=np.uint8)).save(
        tmp_path / "images" / "train" / "n01" / "n01_2.png")
    with pytest.raises(ValueError, match=r"is 9 x 10 \(H x W\) but .* says 8 x 10"):
        ds[1]
