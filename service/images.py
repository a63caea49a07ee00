"""Images -> input tensors, exactly as the manifest's preprocessing says (Pillow + numpy, no torch).

decode (JPEG, PNG, WebP, BMP, GIF first frame; EXIF orientation applied) -> convert to the colour mode
-> resize the shorter side to `resize` with the manifest's interpolation (torchvision's Resize(int) on a
PIL image) -> centre crop `crop` (torchvision's CenterCrop) -> x * scale -> optional 1 - x ->
(x - mean) / std per channel -> float32 CHW.

The float steps go through a 256-entry lookup table per channel, built with the very float32
operations above, so the result is bit-identical to applying them to the whole image (and to
export/training.py's `to_tensor` for the digits) at a fraction of the cost.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from service.errors import BadRequest, ImageDecodeError, PayloadTooLarge
from service.manifest import Preprocessing

FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
INTERPOLATION = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}
CHANNELS = {"RGB": 3, "L": 1}


def resized_size(width: int, height: int, resize: int) -> tuple[int, int]:
    """(w, h) after resizing the shorter side to `resize` (torchvision's rounding: the long side truncates)."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = resize, int(resize * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def center_crop_box(width: int, height: int, crop: int) -> tuple[int, int, int, int]:
    """torchvision's centre crop offsets (round half to even, as Python's round)."""
    top = round((height - crop) / 2.0)
    left = round((width - crop) / 2.0)
    return left, top, left + crop, top + crop


class Preprocessor:
    """The manifest's preprocessing for one model's input of shape (C, H, W)."""

    def __init__(self, pre: Preprocessing, sample_shape: Sequence[int], max_pixels: int = 64_000_000) -> None:
        channels, height, width = (int(d) for d in sample_shape)
        if CHANNELS[pre.color_mode] != channels:
            raise ValueError(
                f"color mode {pre.color_mode} gives {CHANNELS[pre.color_mode]} channels, input has {channels}"
            )
        if not pre.crop == height == width:
            raise ValueError(f"crop {pre.crop} does not match the input's {height}x{width}")
        if len(pre.mean) != channels or len(pre.std) != channels:
            raise ValueError(f"mean/std need {channels} values")
        self.pre = pre
        self.shape = (channels, height, width)
        self.max_pixels = max_pixels
        self.resample = INTERPOLATION[pre.interpolation]
        # lut[c, v]: the float32 result for pixel value v in channel c, computed with the same float32 ops
        # (and order) as the per-pixel formula.
        v = np.arange(256, dtype=np.uint8).astype(np.float32) * np.float32(pre.scale)
        if pre.invert:
            v = np.float32(1.0) - v
        self.lut = np.stack([(v - np.float32(m)) / np.float32(s) for m, s in zip(pre.mean, pre.std, strict=True)])

    # --- steps ------------------------------------------------------------------------------------

    def decode(self, data: bytes) -> Image.Image:
        """Bytes -> a loaded image in the model's colour mode (first frame of an animation)."""
        if not data:
            raise ImageDecodeError("empty image")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data), formats=FORMATS)
                if img.width * img.height > self.max_pixels:
                    raise PayloadTooLarge(
                        f"image of {img.width}x{img.height} pixels exceeds the limit of {self.max_pixels}"
                    )
                # A long, thin image grows when its shorter side is resized: 1x60000 would become 256x15360000.
                width, height = resized_size(img.width, img.height, self.pre.resize)
                if width * height > self.max_pixels:
                    raise PayloadTooLarge(
                        f"image of {img.width}x{img.height} pixels would be {width}x{height} once its shorter side "
                        f"is resized to {self.pre.resize}, beyond the limit of {self.max_pixels} pixels"
                    )
                img = ImageOps.exif_transpose(img) if img.format in ("JPEG", "WEBP", "PNG") else img
                img.load()
        except PayloadTooLarge:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise PayloadTooLarge(f"image too large: {exc}") from None
        except UnidentifiedImageError:
            raise ImageDecodeError(f"not an image in a supported format ({', '.join(FORMATS)})") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageDecodeError(f"cannot decode image: {exc}") from None
        return self.convert(img)

    def convert(self, img: Image.Image) -> Image.Image:
        mode = self.pre.color_mode
        if img.mode == mode:
            return img
        if img.mode == "P":
            img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        elif img.mode in ("I;16", "I;16B", "I;16L", "I"):
            img = Image.fromarray((np.asarray(img, np.uint32) >> 8).astype(np.uint8), "L")
        return img if img.mode == mode else img.convert(mode)

    def resize_crop(self, img: Image.Image) -> np.ndarray:
        """Shorter side to `resize`, centre crop `crop`: uint8 (H, W) or (H, W, C)."""
        size = resized_size(img.width, img.height, self.pre.resize)
        if size != img.size:
            img = img.resize(size, self.resample)
        crop = self.pre.crop
        if img.width < crop or img.height < crop:  # torchvision pads with zeros, then crops
            arr = np.asarray(img)
            ph, pw = max(0, crop - img.height), max(0, crop - img.width)
            pad = [(ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)] + [(0, 0)] * (arr.ndim - 2)
            img = Image.fromarray(np.pad(arr, pad), img.mode)
        if img.size != (crop, crop):
            img = img.crop(center_crop_box(img.width, img.height, crop))
        return np.asarray(img)

    def normalize(self, pixels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """uint8 (H, W[, C]) -> float32 (C, H, W): scale, invert, normalise."""
        if out is None:
            out = np.empty(self.shape, np.float32)
        if pixels.ndim == 2:
            np.take(self.lut[0], pixels, out=out[0])
        else:
            for c in range(self.shape[0]):
                np.take(self.lut[c], pixels[:, :, c], out=out[c])
        return out

    # --- whole images -----------------------------------------------------------------------------

    def __call__(self, data: bytes, out: np.ndarray | None = None) -> np.ndarray:
        return self.normalize(self.resize_crop(self.decode(data)), out)

    def batch(self, images: Sequence[bytes]) -> np.ndarray:
        """Several encoded images -> float32 (N, C, H, W)."""
        if not images:
            raise BadRequest("no image in the request")
        out = np.empty((len(images), *self.shape), np.float32)
        for i, data in enumerate(images):
            try:
                self(data, out[i])
            except (ImageDecodeError, PayloadTooLarge) as exc:
                if len(images) > 1:
                    raise type(exc)(f"image {i + 1} of {len(images)}: {exc.message}") from None
                raise
        return out
