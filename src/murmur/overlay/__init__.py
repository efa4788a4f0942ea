"""Overlay protocols (sans-I/O): gossip mesh, peer management, baselines, circuits."""
