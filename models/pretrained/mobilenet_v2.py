"""torchvision's ImageNet MobileNetV2 as a Keras model, its weights read from the torch file.

The layers follow torchvision's definition one for one, so the state dict maps by name:
`features.0` is the stem (3x3 conv, stride 2, 32 channels), `features.1`-`features.17` the
inverted residual blocks of the paper's table (expansion t, channels c, repeats n, stride s),
`features.18` the 1x1 conv to 1280 channels, `classifier.1` the 1000-way linear layer. Two
details keep it faithful: torch pads a 3x3 conv by one pixel on every side, which Keras'
"same" does not do at stride 2 (it pads right and bottom only), so strided convs get explicit
padding; and torch's batch norm epsilon is 1e-5, not Keras' 1e-3.

The model takes RGB in [0, 1] and normalises it with ImageNet's mean and deviation inside,
so a caller feeds decoded pixels; `preprocess` is torchvision's evaluation transform (shorter
side to 256, centre 224 crop).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from keras import layers
from PIL import Image

from models.pretrained.torch_state import load_state_dict

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
"""(expansion, output channels, repeats, first stride) of each stage."""
EPS = 1e-5
FEATURES = 1280


def preprocess(path: Path, size: int = 224) -> np.ndarray:
    """torchvision's evaluation transform, to within a pixel of rounding: the shorter side
    resized to size*8/7 (256 for 224) bilinearly, the centre size x size cropped; RGB float32
    in [0, 1], HWC."""
    with Image.open(path) as f:
        im = f.convert("RGB")
    short = round(size * 256 / 224)
    w, h = im.size
    scale = short / min(w, h)
    im = im.resize(
        (max(short, round(w * scale)), max(short, round(h * scale))), Image.Resampling.BILINEAR
    )
    w, h = im.size
    left, top = (w - size) // 2, (h - size) // 2
    im = im.crop((left, top, left + size, top + size))
    return np.asarray(im, dtype=np.float32) / 255.0


class _Builder:
    """Builds the graph and remembers which torch name each weighted layer takes."""

    def __init__(self) -> None:
        self.torch_names: dict[str, str] = {}
        """Keras layer name -> torch module name"""

    def layer(self, torch_name: str, make: type[layers.Layer], **kw: object) -> layers.Layer:
        name = torch_name.replace(".", "_")
        self.torch_names[name] = torch_name
        return make(name=name, **kw)

    def conv(
        self, x: keras.KerasTensor, at: str, filters: int, k: int, stride: int
    ) -> keras.KerasTensor:
        """A conv (depthwise when `filters` is 0) as torch pads it: one pixel each side."""
        if k == 3 and stride == 2:
            x = layers.ZeroPadding2D(1)(x)
        pad = "same" if k == 3 and stride == 1 else "valid"
        if filters:
            kw: dict[str, object] = {"filters": filters}
            return self.layer(
                at, layers.Conv2D, kernel_size=k, strides=stride, padding=pad, use_bias=False, **kw
            )(x)
        return self.layer(
            at, layers.DepthwiseConv2D, kernel_size=k, strides=stride, padding=pad, use_bias=False
        )(x)

    def bn(self, x: keras.KerasTensor, at: str) -> keras.KerasTensor:
        return self.layer(at, layers.BatchNormalization, epsilon=EPS)(x)

    def conv_bn_relu(
        self, x: keras.KerasTensor, at: str, filters: int, k: int, stride: int
    ) -> keras.KerasTensor:
        """torchvision's Conv2dNormActivation: `at`.0 the conv, `at`.1 its batch norm."""
        x = self.bn(self.conv(x, f"{at}.0", filters, k, stride), f"{at}.1")
        return layers.ReLU(6.0)(x)

    def block(
        self, x: keras.KerasTensor, at: str, t: int, c: int, stride: int
    ) -> keras.KerasTensor:
        """An inverted residual: expand (1x1), filter (3x3 depthwise), project (1x1, linear)."""
        inp, y, j = int(x.shape[-1]), x, 0
        if t != 1:
            y, j = self.conv_bn_relu(y, f"{at}.conv.0", inp * t, 1, 1), 1
        y = self.conv_bn_relu(y, f"{at}.conv.{j}", 0, 3, stride)
        y = self.bn(self.conv(y, f"{at}.conv.{j + 1}", c, 1, 1), f"{at}.conv.{j + 2}")
        return layers.Add()([x, y]) if stride == 1 and inp == c else y


def build(size: int = 224, top: bool = True) -> tuple[keras.Model, dict[str, str]]:
    """The network on `size` x `size` RGB in [0, 1]: the 1000 ImageNet logits when `top`, else
    the last feature map (size/32 per side, 1280 channels); and the torch name of each weighted
    layer."""
    b = _Builder()
    inp = keras.Input((size, size, 3), name="image")
    x = layers.Normalization(mean=MEAN, variance=[s * s for s in STD], name="imagenet_norm")(inp)
    x = b.conv_bn_relu(x, "features.0", 32, 3, 2)
    i = 1
    for t, c, n, s in BLOCKS:
        for r in range(n):
            x = b.block(x, f"features.{i}", t, c, s if r == 0 else 1)
            i += 1
    x = b.conv_bn_relu(x, f"features.{i}", FEATURES, 1, 1)
    if top:
        x = layers.GlobalAveragePooling2D()(x)
        x = b.layer("classifier.1", layers.Dense, units=1000)(x)
    return keras.Model(inp, x, name="mobilenet_v2"), b.torch_names


def load(weights: Path, size: int = 224, top: bool = True) -> keras.Model:
    """The model with torchvision's weights from `weights` (the `.pth` file)."""
    return _loaded(load_state_dict(weights), size, top)


def classifier(weights: Path, size: int = 224) -> keras.Model:
    """The classifier as a device runs it, one pass giving three outputs: `logits` (1000),
    `cams` (each class's activation map: the linear layer applied at every cell of the last
    feature map, so the logits are the maps' means) and `features` (the pooled 1280)."""
    state = load_state_dict(weights)
    base = _loaded(state, size, top=False)
    w, b = state["classifier.1.weight"], state["classifier.1.bias"]
    maps = layers.Conv2D(len(b), 1, name="cams")
    cams = maps(base.output)
    maps.set_weights([w.T[None, None], b])
    logits = layers.GlobalAveragePooling2D(name="logits")(cams)
    features = layers.GlobalAveragePooling2D(name="features")(base.output)
    return keras.Model(base.input, [logits, cams, features], name="classifier")


def _loaded(state: dict[str, np.ndarray], size: int, top: bool) -> keras.Model:
    model, names = build(size, top)
    for layer in model.layers:
        if layer.name in names:
            layer.set_weights(_weights(layer, state, names[layer.name]))
    return model


def _weights(layer: layers.Layer, state: dict[str, np.ndarray], at: str) -> list[np.ndarray]:
    """A layer's weights from the state dict, in Keras' layouts."""
    if isinstance(layer, layers.BatchNormalization):
        return [state[f"{at}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]
    w = state[f"{at}.weight"]
    if isinstance(layer, layers.Dense):
        return [w.T, state[f"{at}.bias"]]
    if isinstance(layer, layers.DepthwiseConv2D):  # (C, 1, kh, kw) -> (kh, kw, C, 1)
        return [w.transpose(2, 3, 0, 1)]
    return [w.transpose(2, 3, 1, 0)]  # (out, in, kh, kw) -> (kh, kw, in, out)
