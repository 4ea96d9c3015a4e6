"""Areas of simple shapes: a small package to try `forge validate` on."""

import math


def circle_area(radius: float) -> float:
    return math.pi * radius * radius


def rectangle_area(width: float, height: float) -> float:
    return width * height
