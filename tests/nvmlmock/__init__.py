"""A mock libnvidia-ml.so.1 in C, for running PyNvml through the real pynvml ctypes bindings.

See ``build.py`` for compiling it and writing its GPU layouts, and ``mock_nvml.c`` for the
config format and the fault-injection files.
"""
