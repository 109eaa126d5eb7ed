"""Units of memory, named once: `bytes / GIB` reads as what it is."""

from __future__ import annotations

MIB = 1 << 20
GIB = 1 << 30
