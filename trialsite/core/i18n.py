"""Protocol texts in the page's language.

The protocol file gives each text its English and, beside it, its Chinese (`text` and
`text_zh`); a page shows the one of its active language. Code and data stay English-keyed:
only what a person reads changes.
"""

from django.utils import translation


def localized(english: str, chinese: str) -> str:
    """The Chinese on a Chinese page when the protocol gives one; the English otherwise."""
    if chinese and (translation.get_language() or "").startswith("zh"):
        return chinese
    return english
