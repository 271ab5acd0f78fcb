"""QR codes as inline SVG (ticket codes for check-in, the Telegram deep link for a phone)."""

from __future__ import annotations

import re

import qrcode
import qrcode.image.svg
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

# qrcode writes a fixed width and height in mm; the pages size the image with CSS instead.
_SVG_SIZE = re.compile(r'\s(width|height)="[^"]*"')


def qr_svg(data: str, label: str, *, css_class: str = "") -> SafeString:
    """``data`` as an inline SVG QR image named ``label`` for screen readers, sized by CSS."""
    image = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage, border=2)
    svg = _SVG_SIZE.sub("", image.to_string(encoding="unicode"), count=2)
    attributes = (f'class="{escape(css_class)}" ' if css_class else "") + f'role="img" aria-label="{escape(label)}" '
    # Safe: qrcode's own markup plus escaped attributes.
    return mark_safe(svg.replace("<svg ", f"<svg {attributes}", 1))  # noqa: S308
