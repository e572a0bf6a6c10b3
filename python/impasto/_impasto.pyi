"""The compiled extension (Rust, pyo3): use the package ``impasto`` rather than this."""

from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

__version__: str

class Snapshot:
    """A logged step's picture, converted only when called."""
    def __call__(self) -> np.ndarray: ...

class Stylizer:
    engine: str
    engine_choice: str
    def __init__(self, adapter: Optional[str] = None,
                 settings: Optional[Dict[str, Any]] = None) -> None: ...
    def stylize(self, content: Any, styles: Sequence[Any],
                style_masks: Optional[Sequence[Any]] = None,
                callback: Optional[Callable[[int, Dict[str, float], Snapshot, int, float], Any]] = None,
                progress: Optional[Callable[[int, int], Any]] = None,
                settings: Optional[Dict[str, Any]] = None) -> np.ndarray: ...
    def score(self, picture: Any, content: Any, styles: Sequence[Any],
              settings: Optional[Dict[str, Any]] = None) -> Dict[str, Any]: ...
    def plan(self, content: Any, styles: Sequence[Any],
             style_masks: Optional[Sequence[Any]] = None,
             settings: Optional[Dict[str, Any]] = None) -> Dict[str, Any]: ...

def devices() -> List[Dict[str, Any]]: ...
