"""What kind of file an upload is, from its content: the name's extension says nothing. Pure."""

from __future__ import annotations

import zipfile
from typing import BinaryIO

PDF = "application/pdf"
PNG = "image/png"
JPEG = "image/jpeg"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ODT = "application/vnd.oasis.opendocument.text"
ODS = "application/vnd.oasis.opendocument.spreadsheet"

KINDS = (PDF, DOCX, XLSX, ODT, ODS, PNG, JPEG)
ALLOWED = "PDF, DOCX, XLSX, ODT, ODS, PNG or JPEG"


def sniff(file: BinaryIO) -> str | None:
    """The allowed content type the bytes are, or None. Reads from the start and leaves the
    file where it found it."""
    at = file.tell()
    try:
        file.seek(0)
        head = file.read(8)
        if head.startswith(b"%PDF-"):
            return PDF
        if head.startswith(b"\x89PNG\r\n\x1a\n"):
            return PNG
        if head.startswith(b"\xff\xd8\xff"):
            return JPEG
        if head.startswith(b"PK\x03\x04"):
            file.seek(0)
            return _office(file)
        return None
    finally:
        file.seek(at)


def _office(file: BinaryIO) -> str | None:
    """An OpenDocument file names its type in its first entry; an Office Open XML file has
    its content types and the part of its kind."""
    try:
        with zipfile.ZipFile(file) as z:
            names = set(z.namelist())
            if "mimetype" in names:
                kind = z.read("mimetype").decode("ascii", "replace").strip()
                return kind if kind in (ODT, ODS) else None
            if "[Content_Types].xml" in names:
                if "word/document.xml" in names:
                    return DOCX
                if "xl/workbook.xml" in names:
                    return XLSX
    except (zipfile.BadZipFile, OSError, KeyError, ValueError):
        return None
    return None
