import math

import matplotlib.pyplot as plt
import pytest
import torch

from ebmlib import plotting, report


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_density_and_sample_panels_draw_and_return_the_figure():
    plotting.set_style()
    fig, axes = plt.subplots(1, 3)
    energy = lambda x: 0.5 * x.pow(2).sum(-1)  # noqa: E731
    assert plotting.plot_energy_density(axes[0], energy, lim=3, n=50, title="density", colorbar=True) is fig
    assert plotting.plot_samples(axes[1], torch.randn(500, 2), lim=3, title="hist") is fig
    assert plotting.plot_samples(axes[2], torch.randn(500, 2), kind="scatter") is fig
    image = axes[0].images[0].get_array()
    assert image.shape == (50, 50)
    assert image.max() == image[24:26, 24:26].max()  # the mode of the Gaussian is in the centre
    assert axes[0].get_title() == "density"


def test_plot_history_and_bad_arguments():
    fig, ax = plt.subplots()
    history = {"iteration": [1, 2, 3], "loss": [3.0, 2.0, 1.0]}
    assert plotting.plot_history(ax, history, ["loss"], title="loss") is fig
    with pytest.raises(ValueError, match="keys"):
        plotting.plot_history(ax, history, ["energy"])
    with pytest.raises(ValueError, match="kind"):
        plotting.plot_samples(ax, torch.randn(10, 2), kind="kde")
    with pytest.raises(ValueError, match="x"):
        plotting.plot_samples(ax, torch.randn(10, 3))


def test_paper_vs_ours_table():
    table = report.paper_vs_ours(
        [
            {"experiment": "toy", "metric": "KL", "paper": None, "ours": 0.123456},
            {"experiment": "toy", "metric": "MMD", "paper": 1.2e-4, "ours": torch.tensor(3.0)},
        ],
        scale="ci",
        hardware="CPU",
    )
    assert list(table.columns) == ["experiment", "metric", "paper", "this book", "scale", "hardware"]
    assert table["paper"].tolist() == ["—", "0.00012"]
    assert table["this book"].tolist() == ["0.1235", "3"]
    with pytest.raises(ValueError, match="rows"):
        report.paper_vs_ours([{"experiment": "toy"}], scale="ci", hardware="CPU")


def test_set_style_shows_figures_as_retina_pngs_in_jupyter():
    """In an IPython shell (a Jupyter kernel, the book build) a figure displays as a PNG with twice the pixels
    of the size it is shown at."""
    import base64
    import struct

    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        plotting.set_style()
        fig, ax = plt.subplots(figsize=(3, 2))
        ax.plot([0, 1], [0, 1])
        png, size = shell.display_formatter.formatters["image/png"](fig)
        png = base64.b64decode(png) if isinstance(png, str) else png  # newer IPython hands over base64
        width, height = struct.unpack(">II", png[16:24])  # the PNG header's IHDR chunk
        assert (width // 2, height // 2) == (size["width"], size["height"])  # shown at half its pixels
        assert width > 500  # 3 inches at twice the style's 100 dpi, less the tight bounding box's trim
    finally:
        InteractiveShell.clear_instance()


@pytest.mark.parametrize("low, high", [(0.33, 1.0), (0.6, 0.9), (2.1, 2.9), (0.01, 10.0), (1.0, 300.0)])
def test_log_axes_show_plain_numbers_whatever_their_range(low, high):
    """A log axis that spans less than a decade (a short run's training time) still gets at least two plain
    labels inside its range; a long one gets its powers of 10 and no crowd of minor labels."""
    fig, ax = plt.subplots()
    ax.plot([low, high], [low, high])
    ax.set(xscale="log", xlim=(low, high))
    plotting.plain_log_ticks(ax.xaxis)
    fig.canvas.draw()
    shown = [(tick.get_position()[0], tick.get_text()) for minor in (False, True)
             for tick in ax.get_xticklabels(minor=minor) if tick.get_text()]
    inside = [(value, text) for value, text in shown if low <= value <= high]
    assert len(inside) >= 2, shown
    assert all(float(text) == pytest.approx(value) for value, text in inside)  # plain, not 10^k notation
    if high / low >= 10:
        assert len(inside) <= 3 * (1 + int(math.log10(high / low))), inside


def test_plain_log_ticks_needs_an_axis():
    _, ax = plt.subplots()
    with pytest.raises(ValueError, match="^axis "):
        plotting.plain_log_ticks(ax)
