"""What a browser would show of a page: text that Bootstrap or HTML keeps hidden is marked so.

Enough of the rules for the server-side tests: the `hidden` attribute, `aria-hidden`,
`display:none`, Bootstrap's `d-none` and `visually-hidden`, and its `.invalid-feedback`, which
shows only after an `.is-invalid` sibling or with `d-block`.
"""

from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


@dataclass
class Element:
    tag: str
    attrs: dict
    hidden: bool
    ancestors: list["Element"]
    text: str = ""
    sibling_classes: set = field(default_factory=set)  # classes of the children seen so far

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())


@dataclass
class Text:
    text: str
    hidden: bool
    ancestors: list[Element]

    def inside(self, **attrs) -> bool:
        return any(all(e.attrs.get(k) == v for k, v in attrs.items()) for e in self.ancestors)


class Page(HTMLParser):
    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.stack: list[Element] = []
        self.elements: list[Element] = []
        self.texts: list[Text] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        parent = self.stack[-1] if self.stack else None
        element = Element(tag, attrs, False, list(self.stack))
        style = (attrs.get("style") or "").replace(" ", "")
        element.hidden = bool(
            (parent and parent.hidden)
            or "hidden" in attrs
            or attrs.get("aria-hidden") == "true"
            or "display:none" in style
            or element.classes & {"d-none", "visually-hidden"}
            or (
                "invalid-feedback" in element.classes
                and "d-block" not in element.classes
                and not (parent and "is-invalid" in parent.sibling_classes)
            )
            or (tag == "input" and attrs.get("type") == "hidden")
        )
        if parent:
            parent.sibling_classes |= element.classes
        self.elements.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        text = " ".join(data.split())
        if not text:
            return
        hidden = bool(self.stack and self.stack[-1].hidden)
        self.texts.append(Text(text, hidden, list(self.stack)))
        for element in self.stack:
            element.text = f"{element.text} {text}".strip()

    def find(self, tag: str, **attrs) -> list[Element]:
        return [
            e
            for e in self.elements
            if e.tag == tag and all(e.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def texts_containing(self, needle: str) -> list[Text]:
        return [t for t in self.texts if needle in t.text]
