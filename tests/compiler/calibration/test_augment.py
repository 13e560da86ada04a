import numpy as np

from edgec.compiler.calibration.augment import augmented_training, has_images, image_axes


def _feeds(layout: str = "nchw", count: int = 3) -> list[dict]:
    rng = np.random.default_rng(0)
    shape = (2, 3, 32, 24) if layout == "nchw" else (2, 32, 24, 3)
    return [{"image": rng.normal(size=shape).astype(np.float32), "scale": np.array([1.5], np.float32)}
            for _ in range(count)]


def test_image_axes_tell_nchw_nhwc_and_non_images():
    assert image_axes(np.zeros((1, 3, 32, 32), np.float32)) == (1, 2, 3)
    assert image_axes(np.zeros((1, 32, 32, 3), np.float32)) == (3, 1, 2)
    assert image_axes(np.zeros((1, 64, 32, 32), np.float32)) is None        # a feature map, not an image
    assert image_axes(np.zeros((1, 3, 32, 32), np.int64)) is None
    assert image_axes(np.zeros((1, 128), np.float32)) is None
    assert has_images(_feeds()) and not has_images([{"ids": np.zeros((1, 8), np.int64)}])


def test_variants_keep_shape_dtype_and_range_and_leave_other_inputs():
    for layout in ("nchw", "nhwc"):
        feeds = _feeds(layout)
        variants = list(augmented_training(feeds, seed=1, count=10)())
        assert len(variants) == 10
        lo = min(float(f["image"].min()) for f in feeds)
        hi = max(float(f["image"].max()) for f in feeds)
        for v in variants:
            assert v["image"].shape == feeds[0]["image"].shape and v["image"].dtype == np.float32
            assert np.isfinite(v["image"]).all()
            assert v["image"].min() >= lo - 0.2 * (hi - lo) and v["image"].max() <= hi + 0.2 * (hi - lo)
            assert np.array_equal(v["scale"], feeds[0]["scale"])
            assert not any(np.array_equal(v["image"], f["image"]) for f in feeds)     # new inputs


def test_each_pass_draws_new_variants_but_a_seed_repeats_them():
    feeds = _feeds()
    stream = augmented_training(feeds, seed=3, count=4)
    first, second = list(stream()), list(stream())
    assert not np.array_equal(first[0]["image"], second[0]["image"])
    again = list(augmented_training(feeds, seed=3, count=4)())
    assert all(np.array_equal(a["image"], b["image"]) for a, b in zip(first, again, strict=True))


def test_variants_stay_close_to_the_images_they_come_from():
    """Crops of 70-100 % and mild photometric moves: a variant correlates with some original image."""
    x = np.linspace(0, 1, 64)
    smooth = (np.sin(6 * x)[:, None] * np.cos(4 * x)[None, :]).astype(np.float32)
    feeds = [{"image": np.broadcast_to(smooth, (1, 3, 64, 64)).copy()}]
    for v in augmented_training(feeds, seed=0, count=8)():
        corr = max(abs(np.corrcoef(v["image"][0, 0].ravel(), img.ravel())[0, 1])
                   for img in (smooth, smooth[:, ::-1]))
        assert corr > 0.5
