"""Convolutional networks for images: the image energies of the papers and a small feature classifier."""

from __future__ import annotations

from torch import Tensor, nn

from ebmlib.nets.mlp import make_activation
from ebmlib.utils import check_int, check_tensor


def conv_features(width: int = 16, out_channels: int = 16) -> nn.Sequential:
    """The paper's ``h_φ`` for ``1×32×32`` images (App. B.3.2): four SiLU convolutions (``width`` = 16 doubles
    to 128 over strides 2) and a 1×1 convolution to ``out_channels``; output ``(B, out_channels · 16)``."""
    check_int(width, "width", minimum=1)
    check_int(out_channels, "out_channels", minimum=1)
    w = width
    return nn.Sequential(
        nn.Conv2d(1, w, 3, 1, 1), make_activation("silu"),
        nn.Conv2d(w, 2 * w, 4, 2, 1), make_activation("silu"),
        nn.Conv2d(2 * w, 4 * w, 4, 2, 1), make_activation("silu"),
        nn.Conv2d(4 * w, 8 * w, 4, 2, 1), make_activation("silu"),
        nn.Conv2d(8 * w, out_channels, 1), nn.Flatten(),
    )


class ConvEnergy(nn.Module):
    """The paper's image energy (Table 2): a 3×3 convolution with ``nf`` filters (stride 1), ``n_down`` 4×4
    convolutions (stride 2, padding 1) with ``2 nf`` filters each, or ``2 nf, 4 nf, 8 nf, …`` with
    ``doubling``, Swish (SiLU) after each, then a linear map of the flattened features to a scalar.

    The paper's networks: MNIST and Fashion-MNIST ``ConvEnergy(32, 1, nf=32, n_down=3)``, CIFAR-10
    ``ConvEnergy(32, 3, nf=64, n_down=3, doubling=True)``, CelebA ``ConvEnergy(64, 3, nf=32, n_down=4,
    doubling=True)``; ``n_down=2`` suits 8×8 digits.

    Parameters
    ----------
    image_size
        Side of the square input, divisible by ``2**n_down``.
    channels
        Input channels.
    nf
        Base number of filters.
    n_down
        Number of stride-2 convolutions.
    doubling
        Double the filters at every stride-2 convolution (``2**(k+1) nf`` at the ``k``-th) instead of keeping
        ``2 nf``.
    """

    def __init__(self, image_size: int, channels: int = 1, *, nf: int = 32, n_down: int = 3,
                 doubling: bool = False) -> None:
        super().__init__()
        check_int(image_size, "image_size", minimum=1)
        check_int(channels, "channels", minimum=1)
        check_int(nf, "nf", minimum=1)
        check_int(n_down, "n_down", minimum=0)
        if image_size % 2**n_down:
            raise ValueError(f"image_size must be divisible by 2**n_down = {2**n_down}, got {image_size}")
        if not isinstance(doubling, bool):
            raise ValueError(f"doubling must be a bool, got {doubling!r}")
        layers: list[nn.Module] = [nn.Conv2d(channels, nf, 3, 1, 1), nn.SiLU()]
        width = nf
        for k in range(n_down):
            out = nf * 2 ** (k + 1) if doubling else 2 * nf
            layers += [nn.Conv2d(width, out, 4, 2, 1), nn.SiLU()]
            width = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width * (image_size // 2**n_down) ** 2, 1)
        self.event_shape = (channels, image_size, image_size)

    def forward(self, x: Tensor) -> Tensor:
        """Energies ``(B,)`` of images ``(B, C, H, W)``."""
        check_tensor(x, "x", floating=True, finite=False)
        if x.ndim != 4 or tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(f"x must have shape (B, {', '.join(map(str, self.event_shape))}), got {tuple(x.shape)}")
        return self.head(self.features(x).flatten(1)).squeeze(-1)


class FeatureClassifier(nn.Module):
    """A small CNN classifier whose penultimate activations serve as features for a Fréchet distance
    (a stand-in for the Inception network of FID on data where no pretrained network is available).

    Two 3×3 convolutions (32 and 64 filters, the second with stride 2), ReLU, a ``feature_dim``-unit hidden
    layer (the features) and a linear layer to ``n_classes`` logits.

    Parameters
    ----------
    image_size
        Side of the square input, even.
    channels, n_classes, feature_dim
        Input channels, classes, feature width.
    """

    def __init__(self, image_size: int, channels: int = 1, *, n_classes: int = 10, feature_dim: int = 64) -> None:
        super().__init__()
        check_int(image_size, "image_size", minimum=2)
        if image_size % 2:
            raise ValueError(f"image_size must be even, got {image_size}")
        check_int(channels, "channels", minimum=1)
        check_int(n_classes, "n_classes", minimum=2)
        check_int(feature_dim, "feature_dim", minimum=1)
        self.event_shape = (channels, image_size, image_size)
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, 1, 1), nn.ReLU(), nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(), nn.Flatten(),
            nn.Linear(64 * (image_size // 2) ** 2, feature_dim), nn.ReLU(),
        )
        self.classify = nn.Linear(feature_dim, n_classes)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations ``(B, feature_dim)`` of images ``(B, C, H, W)``."""
        check_tensor(x, "x", shape=(None, *self.event_shape), floating=True, finite=False)
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, n_classes)``."""
        return self.classify(self.features(x))
