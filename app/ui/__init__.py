"""Everything that imports Qt lives here; the rest of Hearth runs without a window."""
