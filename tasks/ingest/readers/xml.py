"""XML from outside, parsed safely: only through defusedxml, with entity declarations and
external references refused (billion laughs, XXE) as a quarantine reason, not a crash."""

from __future__ import annotations

import re
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from tasks.ingest.readers.base import ReaderError


def parse_xml(data: bytes) -> Element:
    """The root element of an XML document; a DOCTYPE line is allowed (GE MUSE writes one), any
    entity declaration or external reference is refused (`xml_entities`), malformed XML is
    `xml_parse`. The encoding comes from the BOM or the declaration (Philips 1.04 is UTF-16)."""
    try:
        return fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise ReaderError("xml_entities", f"XML refused: {type(exc).__name__}") from None
    except (ParseError, ValueError, LookupError) as exc:
        raise ReaderError("xml_parse", f"malformed XML: {exc}") from None


def parse_document(data: bytes, root: str) -> Element:
    """`parse_xml`, and the root element must be `root` (by local name), else `not_ecg`: a file
    sniffed by its first bytes may still hold another document."""
    element = parse_xml(data)
    if local_name(element.tag) != root:
        raise ReaderError("not_ecg", f"the root element is not {root}")
    return element


def element_text(element: Element | None) -> str | None:
    """An element's text (its descendants' too) with whitespace collapsed; None when absent or empty."""
    text = " ".join("".join(element.itertext()).split()) if element is not None else ""
    return text or None


def local_name(tag: str) -> str:
    """An element's tag without its namespace (`{urn:hl7-org:v3}series` → `series`)."""
    return tag.rpartition("}")[2]


_ROOT = re.compile(rb"<([A-Za-z_][\w.\-]*:)?([A-Za-z_][\w.\-]*)")


def xml_root(head: bytes) -> str | None:
    """The local name of the root element from the first bytes of a file (after the XML
    declaration, DOCTYPE, comments and processing instructions), or None when it is not XML.
    UTF-16 (with a BOM) is read as such; sniffing needs no parse and no entity handling."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        head = head.decode("utf-16", errors="ignore").encode("utf-8", errors="ignore")
    elif head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    text = head.lstrip()
    if not text.startswith(b"<"):
        return None
    text = re.sub(rb"<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>\[]*(\[.*?\])?\s*>", b"", text, flags=re.DOTALL)
    match = _ROOT.search(text)
    return match.group(2).decode("ascii") if match else None
