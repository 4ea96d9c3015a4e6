import math

from shapes import circle_area, rectangle_area


def test_circle() -> None:
    assert math.isclose(circle_area(1.0), math.pi)


def test_rectangle() -> None:
    assert rectangle_area(2.0, 3.0) == 6.0
