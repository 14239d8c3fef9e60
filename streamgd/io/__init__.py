"""Bytes in and out: local or remote paths, atomic writes, the safetensors file, mapped files."""
