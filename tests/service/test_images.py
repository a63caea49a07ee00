"""Images -> tensors exactly as the manifest says: bit-identical to the training pipeline for the digits,
equal to torchvision's Resize/CenterCrop/ToTensor/Normalize for photos, and every supported format."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from service.errors import BadRequest, ImageDecodeError, PayloadTooLarge
from service.images import Preprocessor, center_crop_box, resized_size
from service.manifest import Preprocessing

IMAGENET = Preprocessing(resize=256, crop=224, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def photo(w: int = 320, h: int = 240, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 255 / (w + h)], axis=-1)
    return Image.fromarray(np.clip(base + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8), "RGB")


def test_digits_are_bit_identical_to_the_training_pipeline():
    import torch  # tests may use torch; the service never does

    from export.training import to_tensor

    pre = Preprocessing(color_mode="L", resize=32, crop=32, mean=[0.0784], std=[0.7843])
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 8, 8), dtype=np.uint8)
    want = to_tensor(images, pre)
    assert isinstance(want, torch.Tensor)
    p = Preprocessor(pre, (1, 32, 32))
    got = p.batch([encode(Image.fromarray(im, "L"), "PNG") for im in images])
    assert got.dtype == np.float32 and got.shape == (16, 1, 32, 32)
    assert np.array_equal(got, want.numpy())  # bit for bit


@pytest.mark.parametrize("size", [(320, 240), (240, 320), (256, 256), (500, 375), (200, 180)])
def test_photos_match_torchvision(size):
    from torchvision import transforms

    img = photo(*size)
    reference = transforms.Compose(
        [
            transforms.Resize(256, interpolation=transforms.InterpolationMode.BILINEAR),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET.mean, IMAGENET.std),
        ]
    )(img).numpy()
    got = Preprocessor(IMAGENET, (3, 224, 224))(encode(img, "PNG"))
    np.testing.assert_allclose(got, reference, rtol=0, atol=1e-5)


def test_geometry_helpers_follow_torchvision():
    assert resized_size(320, 240, 256) == (341, 256)
    assert resized_size(240, 320, 256) == (256, 341)
    assert center_crop_box(341, 256, 224) == (58, 16, 282, 240)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF"])
def test_every_format_decodes(fmt):
    img = photo(64, 48)
    data = encode(img, fmt)
    x = Preprocessor(Preprocessing(resize=32, crop=32, mean=[0.5] * 3, std=[0.5] * 3), (3, 32, 32))(data)
    assert x.shape == (3, 32, 32) and np.isfinite(x).all()
    lossless = encode(img, "WEBP", lossless=True)
    a = Preprocessor(IMAGENET, (3, 224, 224))(lossless)
    b = Preprocessor(IMAGENET, (3, 224, 224))(encode(img, "PNG"))
    np.testing.assert_array_equal(a, b)


def test_gif_uses_the_first_frame_and_modes_are_converted():
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    p = Preprocessor(Preprocessing(resize=16, crop=16, mean=[0, 0, 0], std=[1, 1, 1]), (3, 16, 16))
    x = p(buf.getvalue())
    assert x[0].min() > 0.9 and x[2].max() < 0.1  # red, not blue
    rgba = Image.new("RGBA", (16, 16), (0, 255, 0, 10))
    assert p(encode(rgba, "PNG"))[1].min() > 0.9
    gray = Preprocessor(Preprocessing(color_mode="L", resize=16, crop=16, mean=[0], std=[1]), (1, 16, 16))
    assert gray(encode(Image.new("RGB", (16, 16), (255, 255, 255)), "JPEG")).min() > 0.95


def test_invert_and_scale():
    pre = Preprocessing(color_mode="L", resize=4, crop=4, mean=[0.0], std=[1.0], invert=True)
    x = Preprocessor(pre, (1, 4, 4))(encode(Image.new("L", (4, 4), 255), "PNG"))
    assert np.all(x == 0.0)


def test_bad_images_are_client_errors():
    p = Preprocessor(IMAGENET, (3, 224, 224), max_pixels=300 * 300)
    with pytest.raises(ImageDecodeError):
        p(b"definitely not an image")
    with pytest.raises(ImageDecodeError):
        p(encode(photo(), "JPEG")[:200])
    with pytest.raises(ImageDecodeError):
        p(b"")
    with pytest.raises(PayloadTooLarge):
        p(encode(Image.new("RGB", (400, 400)), "PNG"))
    with pytest.raises(BadRequest):
        p.batch([])
    with pytest.raises(ImageDecodeError, match="image 2 of 2"):
        p.batch([encode(photo(64, 64), "PNG"), b"junk"])


def test_a_thin_image_is_refused_before_the_resize_blows_it_up():
    # 1x20000 is 20,000 pixels, but 256x5,120,000 once its shorter side is resized to 256: refused up front
    p = Preprocessor(IMAGENET, (3, 224, 224))
    with pytest.raises(PayloadTooLarge, match="would be 256x5120000 once its shorter side is resized to 256"):
        p(encode(Image.new("RGB", (1, 20000)), "PNG"))
    p(encode(Image.new("RGB", (256, 20000)), "PNG"))  # 256 wide stays 256 wide: within the limit


def test_manifest_and_input_must_agree():
    with pytest.raises(ValueError):
        Preprocessor(IMAGENET, (1, 224, 224))
    with pytest.raises(ValueError):
        Preprocessor(IMAGENET, (3, 256, 256))
