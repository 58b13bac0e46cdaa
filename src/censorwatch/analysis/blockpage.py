"""A generic block-page recogniser: the notice a filter serves when no fingerprint knows it.

Fingerprint databases only know block pages someone has already catalogued; a new ISP's page
(or the testbed's) says what it is in plain words instead: *this site has been blocked on the
instructions of the telecommunication authority*. This module reads those words, and only
calls a page a block page when a short page both states that access is blocked and names an
authority, a court or a law as the reason — in one of several languages — and is not the page
the control got. It runs after the fingerprint databases and the false-positive signatures,
and never *confirms* anything: a page read this way carries no fingerprint name.
"""

from __future__ import annotations

import re

#: Status codes a block page is served with (plain success, forbidden, "unavailable for legal
#: reasons"); redirects and server errors are judged elsewhere.
BLOCKPAGE_STATUSES = frozenset({200, 403, 451})
#: A notice is short; longer pages (articles about censorship, the site itself) are not read.
MAX_BODY_CHARS = 16 * 1024

# "Access is blocked / denied / restricted", per language. Persian pages spell two letters
# either the Persian way (ی, ک) or the Arabic way (ي, ك), hence the classes.
_BLOCKED = re.compile(
    "|".join(
        [
            # English
            r"\b(?:web ?sites?|sites?|pages?|urls?|domains?|resources?|content|access)\b"
            r"[^.<>]{0,40}?"
            r"\b(?:has been|have been|is|was|are|been)\s+(?:blocked|restricted|denied|banned"
            r"|prohibited|forbidden|disabled by order)\b",
            r"\b(?:web ?sites?|sites?|pages?|urls?|domains?|access|content) (?:blocked|restricted"
            r"|denied)\b",
            r"\bblocked (?:by|on the (?:instructions?|orders?|decision|basis|direction))\b",
            # Russian
            r"доступ[^.<>]{0,40}?ограничен",
            r"(?:ресурс|сайт|страница)[^.<>]{0,30}?заблокирован",
            # Turkish
            r"eri[şs]im[^.<>]{0,30}?engel",
            # French
            r"\b(?:site|page|accès)\b[^.<>]{0,40}?\b(?:bloqué|restreint|refusé|interdit)e?s?\b",
            # Spanish / Portuguese
            r"\b(?:sitio|página|site|acceso|acesso)\b[^.<>]{0,40}?"
            r"\b(?:bloquead[oa]|restringid[oa]|denegado|negado)\b",
            # German
            r"\b(?:zugriff|zugang|seite|website|webseite|internetseite)\b[^.<>]{0,40}?"
            r"\b(?:gesperrt|verweigert|blockiert)\b",
            # Indonesian / Malay
            r"\b(?:diblokir|disekat|internet positif)\b",
            # Arabic
            r"(?:الموقع|الصفحة)[^.<>]{0,20}?(?:محجوب|محظور)|تم حجب|حجب الموقع",
            # Persian (peyvandha's "access to this site is not possible")
            r"دسترس[یي][^.<>]{0,40}?ام[کك]ان[\u200c ]?پذ[یي]ر",
            r"فیلتر شده",
        ]
    ),
    re.IGNORECASE,
)

# "... by order of a court / an authority / under a law", per language.
_AUTHORITY = re.compile(
    "|".join(
        [
            # English
            r"\b(?:court|courts|judicial|judiciary|authority|authorities|ministry|regulator"
            r"|regulatory|government|legislation|law|laws|decree|directive|statute"
            r"|telecommunications?|commission|pursuant|in accordance with|on the instructions"
            r"|by order|orders? of|section \d+|act,? \d{4})\b",
            # Russian
            r"по решению|роскомнадзор|федеральн[а-я]* закон|на основании|суд[аем]?\b|реестр",
            # Turkish
            r"\b(?:karar[ıi]?|mahkeme|btk|kanun|hükmü|tedbir)",
            # French
            r"\b(?:décision|autorité|ordonnance|tribunal|justice|loi|arrêté|ministère"
            r"|judiciaire|administrative)\b",
            # Spanish / Portuguese
            r"\b(?:orden|ordem|autoridad|autoridade|judicial|tribunal|ley|lei|decisión|decisão"
            r"|resolución|ministerio|ministério|anatel|conatel)\b",
            # German
            r"\b(?:behörde|gericht|anordnung|gesetz|verfügung|beschluss)",
            # Indonesian / Malay
            r"\b(?:kementerian|kominfo|undang-undang|peraturan|mcmc|akta)\b",
            # Arabic
            r"الهيئة|هيئة|وزارة|القانون|قرار|المحكمة",
            # Persian
            r"قانون|قضایی|قضائی|مراجع|دستور",
        ]
    ),
    re.IGNORECASE,
)


def blockpage_reason(
    body: str | None, status: int, title: str, control_title: str | None
) -> str | None:
    """Why a plain-HTTP response reads as a block page (the phrases found), or None.

    ``title`` is the response's page title, ``control_title`` the control's (None when the
    control did not reach the page: then nothing is said, a lone page proves nothing).
    """
    if not body or status not in BLOCKPAGE_STATUSES or len(body) > MAX_BODY_CHARS:
        return None
    if control_title is None:
        return None
    if title.lower() == control_title.lower() or _BLOCKED.search(control_title):
        return None
    blocked = _BLOCKED.search(body)
    if blocked is None:
        return None
    authority = _AUTHORITY.search(body)
    if authority is None:
        return None
    return f"{_quote(blocked.group(0))} … {_quote(authority.group(0))}"


def _quote(text: str) -> str:
    return repr(" ".join(text.split())[:60])
