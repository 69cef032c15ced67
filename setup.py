"""Build of the compiled modules; everything else is in pyproject.toml.

- ``apps.ingest._otlpwire``: reads OTLP protobuf requests straight off the wire;
- ``apps.ingest._nativeblock``: encodes span rows in ClickHouse's Native format.

Both are optional: without a C compiler the install still succeeds, OTLP protobuf is read
through protobuf's objects and rows travel as JSONCompactColumns (slower, same stored rows)."""

from setuptools import Extension, setup

try:
    from Cython.Build import cythonize
except ImportError:  # building from an sdist that ships the generated C
    cythonize = None

exts = [
    Extension("apps.ingest._otlpwire", ["apps/ingest/_otlpwire.pyx"], optional=True),
    Extension("apps.ingest._nativeblock", ["apps/ingest/_nativeblock.pyx"], optional=True),
]
setup(ext_modules=cythonize(exts, language_level=3, quiet=True) if cythonize else [])
