"""rkrt: a strict, fast cffi binding of Rockchip's librknnrt."""

__version__ = "0.1.0"
