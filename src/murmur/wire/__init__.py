"""Byte formats. Strict parsing: every length checked, every unknown value rejected."""
