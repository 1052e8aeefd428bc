"""Engines: one small Protocol each, real implementations beside them."""
