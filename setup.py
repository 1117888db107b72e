"""The C part of fstore: the TFRecord encoder (``fstore._tfrecord_native``).

Everything else is in pyproject.toml. The extension is optional: where it cannot be
built (no compiler or Python headers), fstore installs without it and writes TFRecord
with its numpy encoder, which produces the same bytes.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("fstore._tfrecord_native", ["fstore/_tfrecord_native.c"],
                             extra_compile_args=["-O2"], optional=True)])
