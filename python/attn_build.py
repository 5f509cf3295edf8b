"""The PEP 517 build backend of python/ (pyproject.toml): it needs nothing but
the standard library, so pip's isolated build environment has nothing to
download and `pip install --no-index ./python` works offline (setuptools 66,
Debian 12's, would need setuptools and wheel in that environment, or
--no-build-isolation, and writes build/ and attn.egg-info/ into the tree).

The wheel holds attn.py and its metadata, attn-VERSION.dist-info: nothing is
compiled; the module loads libattn.so.1 when imported. The sdist holds this
folder's four files. Both are byte-for-byte reproducible (fixed timestamps).
"""
import base64
import gzip
import hashlib
import io
import os
import tarfile
import zipfile

NAME = "attn"
VERSION = "1.1.0"   # libattn's (meson.build); the module runs with any libattn.so.1
HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = ("attn.py", "attn_build.py", "pyproject.toml", "README.md")
EPOCH = (1980, 1, 1, 0, 0, 0)   # the earliest time a zip file can hold


def _read(name):
    with open(os.path.join(HERE, name), "rb") as f:
        return f.read()


def _metadata():
    """Core metadata 2.1 (PKG-INFO and the wheel's METADATA)."""
    head = "\n".join([
        "Metadata-Version: 2.1",
        f"Name: {NAME}",
        f"Version: {VERSION}",
        "Summary: libattn from Python: attention, its gradients and layers on NumPy arrays",
        "License: MIT",
        "Classifier: License :: OSI Approved :: MIT License",
        "Classifier: Operating System :: POSIX :: Linux",
        "Classifier: Programming Language :: Python :: 3",
        "Requires-Python: >=3.7",
        "Requires-Dist: numpy",
        "Description-Content-Type: text/markdown",
    ])
    return (head + "\n\n").encode() + _read("README.md")


def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    dist_info = f"{NAME}-{VERSION}.dist-info"
    files = [
        ("attn.py", _read("attn.py")),
        (f"{dist_info}/METADATA", _metadata()),
        (f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: attn_build\n"
                               b"Root-Is-Purelib: true\nTag: py3-none-any\n"),
    ]
    record = "\n".join([_record_line(p, d) for p, d in files] + [f"{dist_info}/RECORD,,", ""])
    files.append((f"{dist_info}/RECORD", record.encode()))
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in files:
            info = zipfile.ZipInfo(path, EPOCH)
            info.external_attr = 0o644 << 16
            z.writestr(info, data, zipfile.ZIP_DEFLATED)
    return name


def build_sdist(sdist_directory, config_settings=None):
    base = f"{NAME}-{VERSION}"
    name = f"{base}.tar.gz"
    files = [(n, _read(n)) for n in SOURCES] + [("PKG-INFO", _metadata())]
    with open(os.path.join(sdist_directory, name), "wb") as f, \
            gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, data in files:
            info = tarfile.TarInfo(f"{base}/{path}")
            info.size, info.mode, info.mtime = len(data), 0o644, 315532800   # 1980-01-01
            tar.addfile(info, io.BytesIO(data))
    return name
