"""What the load test's users do as a browser and a phone would, without locust: read a page's
forms as a browser sends them (hidden fields and CSRF token included), and compute an
authenticator app's one-time code from its key (RFC 6238). Tested in tests/test_bench_load.py.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
import struct
import time
from collections import defaultdict
from html.parser import HTMLParser


def totp(
    key_hex: str,
    *,
    at: float | None = None,
    step: int = 30,
    t0: int = 0,
    digits: int = 6,
    drift: int = 0,
) -> str:
    """The authenticator app's code (RFC 6238: HMAC-SHA1 of the time step, truncated)."""
    counter = int(((time.time() if at is None else at) - t0) // step) + drift
    mac = hmac.new(bytes.fromhex(key_hex), struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    number = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(number % 10**digits).zfill(digits)


# --- Forms as a browser reads them ---------------------------------------------------------------


class _Forms(HTMLParser):
    """Every <form> of a page: its action, method and the fields a browser would send."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms: list[dict] = []
        self._form = None
        self._select = None
        self._textarea = None

    def handle_starttag(self, tag, attrs):
        a = {k: (v if v is not None else "") for k, v in attrs}
        if tag == "form":
            self._form = {
                "action": a.get("action", ""),
                "method": a.get("method", "get").lower(),
                "fields": [],  # (name, value) pairs sent as they are
                "radios": defaultdict(list),
                "checkboxes": {},
                "options": defaultdict(list),  # a select's option values, in order
                "names": set(),
            }
            self.forms.append(self._form)
            return
        form = self._form
        if form is None:
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = a.get("type", "text").lower()
            form["names"].add(name)
            if kind == "radio":
                form["radios"][name].append(a.get("value", "on"))
                if "checked" in a:
                    form["fields"].append((name, a.get("value", "on")))
            elif kind == "checkbox":
                form["checkboxes"][name] = a.get("value", "on")
                if "checked" in a:
                    form["fields"].append((name, a.get("value", "on")))
            elif kind not in ("submit", "button", "image", "reset", "file"):
                form["fields"].append((name, a.get("value", "")))
        elif tag == "select" and name:
            form["names"].add(name)
            self._select = {"name": name, "first": None, "selected": None}
        elif tag == "option" and self._select is not None:
            value = a.get("value", "")
            self._form["options"][self._select["name"]].append(value)
            if self._select["first"] is None:
                self._select["first"] = value
            if "selected" in a:
                self._select["selected"] = value
        elif tag == "textarea" and name:
            form["names"].add(name)
            self._textarea = [name, ""]

    def handle_data(self, data):
        if self._textarea is not None:
            self._textarea[1] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        elif tag == "select" and self._select is not None and self._form is not None:
            s = self._select
            value = s["selected"] if s["selected"] is not None else s["first"]
            if value is not None:
                self._form["fields"].append((s["name"], value))
            self._select = None
        elif tag == "textarea" and self._textarea is not None and self._form is not None:
            self._form["fields"].append(tuple(self._textarea))
            self._textarea = None


def form_with(html: str, field: str) -> dict | None:
    """The page's POST form that has `field` (pages also hold the logout and language forms)."""
    parser = _Forms()
    parser.feed(html)
    for form in parser.forms:
        if form["method"] == "post" and field in form["names"]:
            return form
    return None


def fill(form: dict, **typed) -> dict:
    """What the browser sends: the page's values, with what the person typed over them."""
    data = {}
    for name, value in form["fields"]:
        data.setdefault(name, value)
    for name, value in typed.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    return data


def errors_in(html: str) -> str:
    """The form's error messages, for the failure's description (study numbers left out, so
    that the same error counts as one)."""
    found = re.findall(
        r'class="[^"]*(?:invalid-feedback|alert-danger|errorlist)[^"]*"[^>]*>(.{0,400}?)</(?:span|div|ul)>',
        html,
        re.S,
    )
    text = "; ".join(" ".join(re.sub(r"<[^>]+>", " ", m).split()) for m in found)
    return re.sub(r"[A-Z]{2,10}-\d{4,}", "<study number>", text)[:300] or "no error shown"


# --- What a coordinator types on the screening form ----------------------------------------------


def screening_answers(
    form: dict, *, today: datetime.date, eligible: bool, severity: str
) -> dict[str, str | None]:
    """A patient who meets every criterion, or (not eligible) one with a BMI of 31 (I3 not
    met); every yes/no question of the form answered no. Only the form's own fields."""
    answers: dict[str, str | None] = {
        name: "no" for name, values in form["radios"].items() if set(values) == {"yes", "no"}
    }
    answers.update(
        diagnosis_date=(today - datetime.timedelta(days=2)).isoformat(),
        severity=severity,
        # Critical needs one of these (I2).
        mechanical_ventilation="on" if severity == "critical" else None,
        respiratory_rate="31",
        height_cm="165" if eligible else "170",
        # 89.6 kg at 170 cm is a BMI of 31.
        weight_kg="62" if eligible else "89.6",
        egfr="85",
        nyha_class="1",
        ckd_stage="0",
        child_pugh="0",
    )
    return {name: value for name, value in answers.items() if name in form["names"]}
