"""The TensorBoard validation figure, rendered from arrays (no trainer)."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from dereverb.training.media import to_db, validation_figure

SR, HOP, F, N = 16000, 128, 256, 250  # 2 s


def _mags(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    clean = rng.rayleigh(size=(F, N)) * np.linspace(1.0, 0.01, F)[:, None]
    return clean * 3.0, clean * 0.5, clean  # reverberant loudest, output quietest


@pytest.mark.parametrize("rgb", [False, True])
def test_figure_has_labelled_axes_one_shared_db_scale_and_the_gains(rgb: bool) -> None:
    reverb, output, clean = _mags()
    net_input = np.random.default_rng(1).random((3, F, N)) if rgb else None
    fig = validation_figure(reverb, output, clean, sample_rate=SR, hop_length=HOP, t60=0.62,
                            pesq_gain=0.41, stoi_gain=0.083, net_input=net_input,
                            input_label="network input (colormap)")
    FigureCanvasAgg(fig).draw()  # renders without error
    panels = [ax for ax in fig.axes if ax.get_images()]
    colorbars = [ax for ax in fig.axes if not ax.get_images()]
    assert [ax.get_title() for ax in panels] == ["reverberant", "output", "clean"] + (
        ["network input (colormap)"] if rgb else [])
    assert len(colorbars) == 1 and colorbars[0].get_ylabel() == "level (dB)"
    assert all(ax.get_xlabel() == "time (s)" for ax in panels)
    assert panels[0].get_ylabel() == "frequency (kHz)"
    spectra = [ax.get_images()[0] for ax in panels[:3]]
    vmax = max(float(to_db(m).max()) for m in (reverb, output, clean))
    assert [im.get_clim() for im in spectra] == [pytest.approx((vmax - 80.0, vmax))] * 3
    left, right, bottom, top = spectra[0].get_extent()
    assert (left, bottom) == (0.0, 0.0) and right == pytest.approx(N * HOP / SR) and top == pytest.approx(8.0)
    title = fig._suptitle.get_text()
    assert "T60 0.62 s" in title and "PESQ-WB +0.41" in title and "STOI +0.083" in title
    if rgb:  # the network's input as the network sees it: the RGB values themselves
        shown = np.asarray(panels[3].get_images()[0].get_array())
        np.testing.assert_allclose(shown, np.moveaxis(net_input, 0, -1))


def test_louder_panels_do_not_change_the_quieter_ones_colours() -> None:
    """One scale for all three: the output's image values are its own dB, not rescaled per panel."""
    reverb, output, clean = _mags()
    fig = validation_figure(reverb, output, clean, sample_rate=SR, hop_length=HOP)
    out_image = [ax for ax in fig.axes if ax.get_title() == "output"][0].get_images()[0]
    np.testing.assert_allclose(np.asarray(out_image.get_array()), to_db(output))
    assert "T60 nan s" in fig._suptitle.get_text()
