"""impasto: neural style transfer (Gatys, Ecker & Bethge) on any Vulkan, Metal or DX12 GPU
through hand-written WGSL kernels, or on impasto's CPU engine, with numpy arrays in and out.

    >>> import impasto
    >>> picture = impasto.stylize("content.jpg", "style.jpg", size=256, steps=150)
    >>> picture.shape, picture.dtype                      # (H, W, 3) float32 in [0, 1]

Settings are keyword arguments named as ``impasto stylize``'s long options in snake_case
(``size``, ``steps``, ``style_weight``, ``content_layers``, ``optimizer``, ``min_size``,
``preserve_colors``, ``seed``, ``tile``, ``seamless``, ``log_every``, ...) and are checked by
the command line's own parser: ``impasto stylize --help`` explains each. ``impasto.Stylizer``
keeps the engine, the weights and the style targets for many pictures.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from . import _impasto
from ._errors import BadFile, BadSetting, DeviceLost, DoesNotFit, Error

__version__: str = _impasto.__version__
__all__ = [
    "stylize",
    "plan",
    "devices",
    "Stylizer",
    "Losses",
    "Error",
    "BadSetting",
    "BadFile",
    "DoesNotFit",
    "DeviceLost",
]

#: A picture: a path, a PIL image, or a numpy array (H, W, 3) of uint8 or floats in [0, 1].
Picture = Union[str, "os.PathLike[str]", np.ndarray, Any]
#: ``callback(step, losses)``, called at each logged step.
Callback = Callable[[int, "Losses"], Any]


class Losses(dict):
    """The losses at a logged step: ``content``, ``style``, ``tv`` and ``total`` (and
    ``temporal`` for a video frame), as ``impasto stylize`` logs them.

    ``image()`` returns the picture at that step (float32 (H, W, 3) in [0, 1], at that
    scale's size); it is read only when called. ``scale`` is the coarse-to-fine scale's index
    (0: the smallest) and ``seconds`` the time since the optimisation started.
    """

    def __init__(self, values: Dict[str, float], snapshot: Callable[[], np.ndarray],
                 scale: int, seconds: float) -> None:
        super().__init__(values)
        self._snapshot = snapshot
        self.scale = scale
        self.seconds = seconds

    def image(self) -> np.ndarray:
        """The picture at this step: float32 (H, W, 3) in [0, 1]."""
        return self._snapshot()


def _is_pil(x: Any) -> bool:
    return type(x).__module__.startswith("PIL.") and hasattr(x, "convert")


def _picture(x: Any) -> Any:
    """A PIL image as a uint8 RGB array; paths and arrays as they are (the extension reads
    and checks them)."""
    return np.asarray(x.convert("RGB")) if _is_pil(x) else x


def _mask(x: Any) -> Any:
    return np.asarray(x.convert("L")) if _is_pil(x) else x


def _styles(style: Any) -> List[Any]:
    return [_picture(s) for s in style] if isinstance(style, (list, tuple)) else [_picture(style)]


def _in_notebook() -> bool:
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


class _Bar:
    """tqdm's bar (its notebook widget in Jupyter), made at the first step."""

    def __init__(self, tqdm: Any) -> None:
        self._tqdm, self._bar = tqdm, None

    def __call__(self, done: int, steps: int) -> None:
        if self._bar is None:
            self._bar = self._tqdm(total=steps, unit="step", desc="impasto")
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _progress(progress: Union[None, bool, Callable[[int, int], Any]]) -> Any:
    """``progress``: a callable(steps_done, steps); True: a tqdm bar; None: a tqdm bar in
    Jupyter when tqdm is installed, else none; False: none."""
    if callable(progress):
        return progress
    if progress is False or (progress is None and not _in_notebook()):
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return _Bar(tqdm)


class Stylizer:
    """An engine, VGG19 weights and default settings, kept for many pictures: the weights are
    read once, and the style targets of a style set are computed once and reused by later
    calls with the same style images at the same size.

    ``weights``: a weights file (default as the command line: ``$IMPASTO_WEIGHTS``, then the
    user cache, fetched when missing). ``engine``: ``"auto"`` (a hardware GPU if there is one,
    else the CPU engine), ``"gpu"`` (any adapter, software drivers included) or ``"cpu"``.
    ``adapter``: a GPU adapter's name or index from :func:`devices`. Other keyword arguments
    (``storage``, ``tiling``, and any setting of :meth:`stylize`) are the defaults of every
    call; a bad one raises :class:`BadSetting` here.
    """

    def __init__(self, weights: Union[None, str, "os.PathLike[str]"] = None,
                 engine: Optional[str] = None, adapter: Union[None, str, int] = None,
                 **settings: Any) -> None:
        settings.update(weights=weights, engine=engine)
        adapter = None if adapter is None else str(adapter)
        self._native = _impasto.Stylizer(adapter=adapter, settings=settings)

    @property
    def engine(self) -> str:
        """``"gpu"`` or ``"cpu"``: the engine the pictures are made on."""
        return self._native.engine

    @property
    def engine_choice(self) -> str:
        """Which engine runs and why (``--engine auto`` says what it found)."""
        return self._native.engine_choice

    def stylize(self, content: Picture, style: Union[Picture, Sequence[Picture]], *,
                style_masks: Optional[Sequence[Picture]] = None,
                callback: Optional[Callback] = None,
                progress: Union[None, bool, Callable[[int, int], Any]] = None,
                **settings: Any) -> np.ndarray:
        """Stylizes ``content`` with ``style`` (one picture, or a list blended by
        ``style_blend=[w1, w2, ...]``); returns float32 (H, W, 3) in [0, 1], the same picture
        ``impasto stylize`` writes for the same settings.

        ``style_masks``: one mask per style (a grayscale path, PIL image or (H, W) array;
        white or 1 where that style applies). ``callback(step, losses)`` is called at each
        logged step (every ``log_every`` steps) with a :class:`Losses`; an exception raised in
        it stops the run and propagates. Ctrl-C (KeyboardInterrupt) stops the run within a
        step. ``progress``: True for a tqdm bar, False for none, or a callable(steps_done,
        steps); by default a bar in Jupyter when tqdm is installed. The GIL is released while
        the engine works.
        """
        masks = None if style_masks is None else [_mask(m) for m in style_masks]
        on_log = None if callback is None else (
            lambda step, values, snapshot, scale, seconds:
                callback(step, Losses(values, snapshot, scale, seconds)))
        bar = _progress(progress)
        try:
            return self._native.stylize(_picture(content), _styles(style), style_masks=masks,
                                        callback=on_log, progress=bar, settings=settings)
        finally:
            if isinstance(bar, _Bar):
                bar.close()

    def plan(self, content: Picture, style: Union[Picture, Sequence[Picture]], *,
             style_masks: Optional[Sequence[Picture]] = None, **settings: Any) -> Dict[str, Any]:
        """The memory plan of the job's largest scale, as ``impasto stylize --dry-run`` gives
        it: ``fits``, ``peak_bytes``, ``held_bytes``, ``available_bytes``, ``plan`` (bytes by
        kind), and ``largest_fitting_size`` when it does not fit. Nothing is run."""
        masks = None if style_masks is None else [_mask(m) for m in style_masks]
        return self._native.plan(_picture(content), _styles(style), style_masks=masks,
                                 settings=settings)

    def score(self, picture: Picture, content: Picture, style: Union[Picture, Sequence[Picture]],
              **settings: Any) -> Dict[str, Any]:
        """How far ``picture`` is from ``content`` and from ``style``, as ``impasto score``
        prints it: ``content`` (the mean relative squared distance of the content layers'
        features), ``style`` (the mean Wasserstein-2 distance of the style layers' features)
        and each layer's value in ``content_layers`` / ``style_layers``. Lower is closer; the
        layers, ``style_scale`` and ``style_blend`` are this stylizer's settings unless given."""
        return self._native.score(_picture(picture), _picture(content), _styles(style),
                                  settings=settings)


def score(picture: Picture, content: Picture, style: Union[Picture, Sequence[Picture]],
          **settings: Any) -> Dict[str, Any]:
    """The score of ``picture`` (:meth:`Stylizer.score`) on a new :class:`Stylizer` on the
    CPU engine (the score's maps are the CPU engine's whichever engine made the picture)."""
    settings.setdefault("engine", "cpu")
    return Stylizer(**settings).score(picture, content, style)


def stylize(content: Picture, style: Union[Picture, Sequence[Picture]], *,
            style_masks: Optional[Sequence[Picture]] = None, callback: Optional[Callback] = None,
            progress: Union[None, bool, Callable[[int, int], Any]] = None,
            **settings: Any) -> np.ndarray:
    """Stylizes ``content`` with ``style``: :meth:`Stylizer.stylize` on a new
    :class:`Stylizer` made with ``settings`` (``weights``, ``engine``, ``adapter`` and the
    rest). Returns float32 (H, W, 3) in [0, 1]."""
    return Stylizer(**settings).stylize(content, style, style_masks=style_masks,
                                        callback=callback, progress=progress)


def plan(content: Picture, style: Union[Picture, Sequence[Picture]], *,
         style_masks: Optional[Sequence[Picture]] = None, **settings: Any) -> Dict[str, Any]:
    """The memory plan of a job (:meth:`Stylizer.plan`) on a new :class:`Stylizer`."""
    return Stylizer(**settings).plan(content, style, style_masks=style_masks)


def devices() -> List[Dict[str, Any]]:
    """The CPU engine and the GPU adapters, best first, as ``impasto devices`` lists them:
    dicts with ``engine`` ("cpu" or "gpu"), ``index`` (what ``adapter=`` takes), ``name``,
    ``backend``, ``device_type`` and the adapter's limits."""
    return _impasto.devices()
