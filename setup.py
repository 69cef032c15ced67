"""Build of the one compiled module (the OTLP wire reader); everything else is in pyproject.toml.

The extension is optional: without a C compiler the install still succeeds and OTLP protobuf
requests are read through protobuf's objects instead (slower, same results)."""

from setuptools import Extension, setup

try:
    from Cython.Build import cythonize
except ImportError:  # building from an sdist that ships the generated C
    cythonize = None

ext = Extension("apps.ingest._otlpwire", ["apps/ingest/_otlpwire.pyx"], optional=True)
setup(ext_modules=cythonize([ext], language_level=3, quiet=True) if cythonize else [])
