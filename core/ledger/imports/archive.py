"""Where an imported inbox file is kept: `<inbox>/archive/<UTC day>/<digest>-<name>`, the name cut to
fit a file system's 255-byte limit (a legal 250-byte inbox name plus the digest would not), keeping
its extension. The cut depends on the name alone, so a replay finds the copy from the origin."""

import glob
import os

NAME_MAX = 255  # bytes, on ext4, XFS, APFS and NTFS alike
DIGEST_CHARS = 12


def archived_tail(name: str) -> str:
    """What follows `<digest>-` in the archived name of a file called `name`."""
    room = NAME_MAX - DIGEST_CHARS - 1
    if len(os.fsencode(name)) <= room:
        return name
    stem, dot, suffix = name.rpartition(".")
    stem, suffix = (stem, dot + suffix) if dot and len(os.fsencode(dot + suffix)) <= 16 else (name, "")
    while stem and len(os.fsencode(stem + suffix)) > room:
        stem = stem[:-1]
    return stem + suffix


def archived_name(name: str, digest: str) -> str:
    return f"{digest[:DIGEST_CHARS]}-{archived_tail(name)}"


def archived_pattern(name: str) -> str:
    """A glob, relative to an archive directory, that matches every archived copy of `name`."""
    return f"*/{'?' * DIGEST_CHARS}-{glob.escape(archived_tail(name))}"
