"""Structural check of a SIF file, without running anything: the cache never publishes a file
that fails it.

Checked: the SIF magic and version; the descriptor table and data area lie inside the file; at
least one used system partition descriptor whose data lies inside the file; that partition starts
with a squashfs superblock whose ``bytes_used`` fits in the partition. A truncated or half-written
file fails (its partition ends past the end of the file, or the header was never written).

Layout (github.com/apptainer/sif, little-endian, packed): a 128-byte global header, then
``DescriptorsTotal`` descriptors of 585 bytes each.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from hpcjobs.errors import ImageError

SIF_MAGIC = b"SIF_MAGIC\x00"
_HEADER = struct.Struct("<32s10s3s3s16sqqqqqqqq")
_DESCRIPTOR = struct.Struct("<iBIIIqqqqqqq128s384s")
HEADER_SIZE = _HEADER.size  # 128
DESCRIPTOR_SIZE = _DESCRIPTOR.size  # 585
DATA_PARTITION = 0x4004
PART_SYSTEM = 1  # partition types "system" and "primary system" (the root filesystem)
PART_PRIMSYS = 2
FS_SQUASH = 1
SQUASHFS_MAGIC = b"hsqs"
_MAX_DESCRIPTORS = 4096


class InvalidSif(ImageError):
    """A file is not a complete, well-formed SIF image."""


@dataclass(frozen=True)
class SifSummary:
    size: int
    arch: str
    partitions: int
    squashfs_bytes: int


def verify_sif(path: str | os.PathLike[str]) -> SifSummary:
    """Raise :class:`InvalidSif` unless ``path`` is a complete SIF with a squashfs root partition."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(HEADER_SIZE)
            if len(head) < HEADER_SIZE:
                raise InvalidSif(f"{path}: {size} bytes, too short for a SIF header")
            (
                _launch,
                magic,
                _version,
                arch,
                _uuid,
                _ctime,
                _mtime,
                _dfree,
                dtotal,
                descoff,
                desclen,
                dataoff,
                datalen,
            ) = _HEADER.unpack(head)
            if magic != SIF_MAGIC:
                raise InvalidSif(f"{path}: no SIF magic")
            if not 0 < dtotal <= _MAX_DESCRIPTORS or desclen < dtotal * DESCRIPTOR_SIZE:
                raise InvalidSif(f"{path}: bad descriptor table ({dtotal} descriptors in {desclen} bytes)")
            if descoff < HEADER_SIZE or descoff + desclen > size or dataoff < 0 or dataoff + datalen > size:
                raise InvalidSif(f"{path}: header points past the end of the file (truncated?)")
            f.seek(descoff)
            table = f.read(dtotal * DESCRIPTOR_SIZE)
            if len(table) < dtotal * DESCRIPTOR_SIZE:
                raise InvalidSif(f"{path}: descriptor table truncated")
            partitions = 0
            squash_bytes = 0
            for i in range(dtotal):
                fields = _DESCRIPTOR.unpack_from(table, i * DESCRIPTOR_SIZE)
                dtype, used, offset, dsize, extra = fields[0], fields[1], fields[5], fields[6], fields[13]
                if not used or dtype != DATA_PARTITION:
                    continue
                if offset < 0 or dsize <= 0 or offset + dsize > size:
                    raise InvalidSif(f"{path}: partition {i} lies past the end of the file (truncated?)")
                fstype, parttype = struct.unpack_from("<ii", extra, 0)
                if parttype not in (PART_SYSTEM, PART_PRIMSYS):
                    continue
                partitions += 1
                if fstype == FS_SQUASH:
                    f.seek(offset)
                    sb = f.read(48)
                    if len(sb) < 48 or sb[:4] != SQUASHFS_MAGIC:
                        raise InvalidSif(f"{path}: system partition {i} has no squashfs superblock")
                    (used_bytes,) = struct.unpack_from("<q", sb, 40)
                    if not 0 < used_bytes <= dsize:
                        raise InvalidSif(f"{path}: squashfs in partition {i} is incomplete")
                    squash_bytes += used_bytes
            if partitions == 0:
                raise InvalidSif(f"{path}: no system partition")
    except OSError as exc:
        raise InvalidSif(f"{path}: cannot read: {exc.strerror}") from exc
    return SifSummary(
        size=size,
        arch=arch.rstrip(b"\x00").decode("ascii", "replace"),
        partitions=partitions,
        squashfs_bytes=squash_bytes,
    )


def write_test_sif(path: str | os.PathLike[str], payload: bytes = b"", *, truncate_to: int | None = None) -> None:
    """Write a minimal well-formed SIF (one squashfs-looking system partition). For tests and fakes."""
    body = bytearray(96)
    body[0:4] = SQUASHFS_MAGIC
    body += payload
    struct.pack_into("<q", body, 40, len(body))
    descoff = HEADER_SIZE
    dataoff = descoff + DESCRIPTOR_SIZE
    header = _HEADER.pack(
        b"#!/usr/bin/env run-singularity\n\x00",
        SIF_MAGIC,
        b"01\x00",
        b"01\x00",
        b"\x00" * 16,
        0,
        0,
        0,
        1,
        descoff,
        DESCRIPTOR_SIZE,
        dataoff,
        len(body),
    )
    extra = struct.pack("<ii", FS_SQUASH, PART_PRIMSYS) + b"01\x00".ljust(384, b"\x00")
    desc = _DESCRIPTOR.pack(
        DATA_PARTITION,
        1,
        1,
        0x1000000 | 1,
        0,
        dataoff,
        len(body),
        len(body),
        0,
        0,
        0,
        0,
        b"rootfs".ljust(128, b"\x00"),
        extra,
    )
    data = header + desc + bytes(body)
    if truncate_to is not None:
        data = data[:truncate_to]
    with open(path, "wb") as f:
        f.write(data)
