"""The offline scene generator: VOC layout read by the real reader, determinism, classes, void band, occlusion."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from robustseg.data.cli import make_datalist
from robustseg.data.natural import SCENE_CLASSES, get_dataset
from robustseg.data.natural_discovery import discover_natural
from robustseg.data.png import read_label
from robustseg.data.scenes import SceneConfig, SceneGenerator, write_scenes

SMALL = SceneConfig(size=48)


def test_scene_is_the_same_whatever_the_number_of_scenes():
    a = SceneGenerator(SMALL, seed=3)
    b = SceneGenerator(SMALL, seed=3)
    for k in (0, 5):
        for x, y in zip(a.scene(k), b.scene(k), strict=True):
            np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.scene(0)[0], a.scene(1)[0])
    assert not np.array_equal(a.scene(0)[0], SceneGenerator(SMALL, seed=4).scene(0)[0])


def test_scenes_cover_every_class_with_a_void_band():
    gen = SceneGenerator(SceneConfig(size=64), seed=0)
    labels = np.stack([gen.scene(k)[1] for k in range(40)])
    assert set(np.unique(labels).tolist()) == {*range(len(SCENE_CLASSES)), 255}
    assert len(SCENE_CLASSES) >= 7  # background and at least six object classes
    for label in labels[:10]:
        scored = np.where(label == 255, 0, label)
        objects = scored > 0
        # every object pixel next to another class is void: no two classes touch without the band between them
        grown = ndimage.maximum_filter(label.astype(int) * (label != 255), size=3)
        shrunk = ndimage.minimum_filter(np.where(label == 255, 999, label.astype(int)), size=3)
        touching = (label != 255) & (grown != shrunk) & (shrunk != 999) & objects
        assert not touching.any()
        void = label == 255
        assert ndimage.binary_dilation(void, iterations=2)[objects].mean() > 0.05  # the band hugs the objects


def test_objects_are_not_separable_by_colour():
    """The tint of an object is drawn from photographs, not from its class: class mean colours nearly coincide."""
    gen = SceneGenerator(SceneConfig(size=64), seed=1)
    pixels: dict[int, list[np.ndarray]] = {}
    for k in range(60):
        image, label = gen.scene(k)
        for c in range(1, len(SCENE_CLASSES)):
            if (label == c).any():
                pixels.setdefault(c, []).append(image[label == c].mean(0))
    means = np.array([np.mean(v, axis=0) for v in pixels.values()])
    spread = np.array([np.std(v, axis=0).mean() for v in pixels.values()])
    assert np.ptp(means, axis=0).max() < spread.mean()  # class means differ less than one object's colour spread


def test_occlusion_happens():
    gen = SceneGenerator(SceneConfig(size=64, objects=(4, 4), object_size=(0.5, 0.6)), seed=0)
    visible = [len(set(np.unique(gen.scene(k)[1]).tolist()) - {0, 255}) for k in range(20)]
    assert min(visible) < 4  # big objects hide others (or repeat a class)


def test_write_scenes_in_voc_layout_read_back(tmp_path):
    summary = write_scenes(tmp_path, num_train=4, num_val=2, config=SMALL, seed=0)
    assert summary["train"] == 4 and (tmp_path / "scenes.json").is_file()
    assert (tmp_path / "ImageSets" / "Segmentation" / "train.txt").read_text().split() == [
        f"scene_{k:05d}" for k in range(4)
    ]
    label_file = tmp_path / "SegmentationClass" / "scene_00004.png"
    img = Image.open(label_file)
    assert img.mode == "P" and img.getpalette()[3:6] == [128, 0, 0]  # VOC's colours
    np.testing.assert_array_equal(read_label(label_file), SceneGenerator(SMALL, seed=0).scene(4)[1])
    photo = Image.open(tmp_path / "JPEGImages" / "scene_00004.jpg")
    assert photo.format == "JPEG" and photo.size == (48, 48)
    found = discover_natural(tmp_path, dataset="scenes")
    assert [len(found.splits[s]) for s in ("train", "val")] == [4, 2]
    make_datalist(tmp_path, dataset="scenes", val_fraction=0.25)
    data = json.loads((tmp_path / "datalist.json").read_text())
    assert [len(data[s]) for s in ("training", "validation", "testing")] == [3, 1, 2]
    assert data["dataset"] == "scenes" and data["labels"]["1"] == SCENE_CLASSES[1]
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_scenes(tmp_path, num_train=4, num_val=2, config=SMALL)


def test_scene_config_refuses_bad_settings():
    with pytest.raises(ValueError, match="size"):
        SceneConfig(size=8)
    with pytest.raises(ValueError, match="objects"):
        SceneConfig(objects=(3, 2))
    assert get_dataset("scenes").class_names == SCENE_CLASSES
