"""Read the clicks of an ``/infer`` request, the two ways MONAI Label clients send them.

* VISTA3D style (OHIF's Point Prompts tab for a ``vista3d``-type model): ``points`` = ``[[i, j, k], ...]`` voxel
  indices of the image, ``point_labels`` = ``[1 or 0, ...]`` (foreground, background), one per point; OHIF also sends
  ``label_prompt`` = ``[the class index]``, which makes that class the request's first prompt.
* deepgrow style (Slicer, OHIF for deepgrow/deepedit models): ``foreground`` / ``background`` = ``[[i, j, k], ...]``.

Both may come together (they are joined) and both combine with ``text_prompt``: the clicks apply to the request's
first prompt (the ``label_prompt`` class when one is given, else the first typed prompt). Syntax errors are
``ClickError`` (HTTP 400) naming the key; whether the points lie inside the image, and whether the served model takes
clicks at all, is checked when the image is known (``textdiffseg.inference.check_clicks``, also a 400).
"""

from __future__ import annotations

from collections.abc import Mapping

from textdiffseg.clicks import MAX_CLICKS, ClickError, Clicks

CLICK_KEYS = ("points", "point_labels", "foreground", "background")


def _index(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ClickError(f"{key}: voxel indices must be integers, got {value!r}")
    if isinstance(value, float) and not value.is_integer():
        raise ClickError(f"{key}: voxel indices must be integers, got {value!r}")
    return int(value)


def _points(value: object, key: str) -> list[tuple[int, int, int]]:
    if value is None or value == "":
        return []
    if not isinstance(value, list | tuple):
        raise ClickError(f"{key} must be a list of [i, j, k] voxel indices, got {type(value).__name__}")
    if len(value) > MAX_CLICKS:
        raise ClickError(f"{key} has {len(value)} points; the limit is {MAX_CLICKS} per request")
    points = []
    for point in value:
        if not isinstance(point, list | tuple) or len(point) != 3:
            raise ClickError(f"{key}: every point must be three voxel indices [i, j, k], got {point!r}"[:200])
        points.append((_index(point[0], key), _index(point[1], key), _index(point[2], key)))
    return points


def _labels(value: object, count: int) -> list[int]:
    if value is None or value == "":
        if count:
            raise ClickError("points were given without point_labels (1 foreground, 0 background, one per point)")
        return []
    if not isinstance(value, list | tuple) or any(isinstance(v, bool) or v not in (0, 1) for v in value):
        raise ClickError(f"point_labels must be a list of 1 (foreground) or 0 (background), got {value!r}"[:200])
    if len(value) != count:
        raise ClickError(f"point_labels has {len(value)} labels for {count} points; give one per point")
    return [int(v) for v in value]


def parse_clicks(data: Mapping[str, object]) -> Clicks | None:
    """The request's clicks (for its first prompt), or ``None`` when it sends none; raises ``ClickError``."""
    points = _points(data.get("points"), "points")
    labels = _labels(data.get("point_labels"), len(points))
    clicks = Clicks(tuple(points), tuple(labels)) + Clicks.of(
        _points(data.get("foreground"), "foreground"), _points(data.get("background"), "background")
    )
    if len(clicks) > MAX_CLICKS:
        raise ClickError(f"{len(clicks)} clicks in one request; the limit is {MAX_CLICKS}")
    return clicks if len(clicks) else None
