"""Inference engines: the S1 decoder loop, jitted S2 decoding, feature extractors, compiled-program store, and the TTS pipeline."""
