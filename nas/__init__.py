"""Proxy NAS with NNI."""
