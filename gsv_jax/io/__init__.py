"""Checkpoint I/O without torch: the original PyTorch files (safe unpickler) and Hugging Face folders."""
