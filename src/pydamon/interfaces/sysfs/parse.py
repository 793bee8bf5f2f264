"""How the kernel's sysfs files parse what is written to them.

Numbers go through kstrtoull() and friends (base auto-detection: ``0x`` hex,
leading ``0`` octal, else decimal; one optional ``+``; one trailing newline;
ERANGE on overflow, EINVAL on anything else), booleans through kstrtobool(),
keywords through sysfs_streq(). These are re-implementations of the
documented behaviour, checked against the kernel's in tests.
"""

from __future__ import annotations

import errno

from ...errors import DamonError

ULONG_MAX = (1 << 64) - 1
UINT_MAX = (1 << 32) - 1
INT_MAX = (1 << 31) - 1

_DIGITS = "0123456789abcdef"


def _einval(text: str) -> DamonError:
    return DamonError(errno.EINVAL, f"invalid number {text!r}")


def kstrtoull(text: str) -> int:
    """Parse an unsigned 64-bit number with base auto-detection (kstrtoull(s, 0))."""
    s = text[1:] if text.startswith("+") else text
    if len(s) >= 3 and s[0] == "0" and s[1] in "xX" and s[2].lower() in _DIGITS:
        base, s = 16, s[2:]
    elif s.startswith("0"):
        base = 8
    else:
        base = 10
    value = 0
    nr_digits = 0
    overflow = False
    for ch in s:
        digit = _DIGITS.find(ch.lower())
        if digit < 0 or digit >= base:
            break
        value = value * base + digit
        if value > ULONG_MAX:
            overflow = True
        nr_digits += 1
    # The kernel reports overflow before looking at what follows the digits.
    if overflow:
        raise DamonError(errno.ERANGE, f"number out of range {text!r}")
    if nr_digits == 0:
        raise _einval(text)
    rest = s[nr_digits:]
    if rest.startswith("\n"):
        rest = rest[1:]
    if rest:
        raise _einval(text)
    return value


def kstrtoul(text: str) -> int:
    return kstrtoull(text)


def kstrtouint(text: str) -> int:
    value = kstrtoull(text)
    if value > UINT_MAX:
        raise DamonError(errno.ERANGE, f"number out of range {text!r}")
    return value


def kstrtoint(text: str) -> int:
    """Signed 32-bit: ``-`` allowed (so ``-0`` is accepted), ERANGE outside int."""
    if text.startswith("-"):
        magnitude = kstrtoull(text[1:])
        if magnitude > INT_MAX + 1:
            raise DamonError(errno.ERANGE, f"number out of range {text!r}")
        return -magnitude
    value = kstrtoull(text)
    if value > INT_MAX:
        raise DamonError(errno.ERANGE, f"number out of range {text!r}")
    return value


def kstrtobool(text: str) -> bool:
    """Y/y/T/t/1/on -> True, N/n/F/f/0/off -> False, judged by the first characters."""
    if not text:
        raise _einval(text)
    first = text[0].lower()
    if first in "yt1":
        return True
    if first in "nf0":
        return False
    if first == "o" and len(text) > 1:
        second = text[1].lower()
        if second == "n":
            return True
        if second == "f":
            return False
    raise DamonError(errno.EINVAL, f"invalid boolean {text!r}")


def sysfs_streq(text: str, keyword: str) -> bool:
    """Equal, ignoring one trailing newline of the written text."""
    if text.endswith("\n"):
        text = text[:-1]
    return text == keyword


def as_einval(parse):
    """Wrap a parser so that every failure, overflow included, is EINVAL.

    Some kernel files (``pid_target``, the quota files) replace the parser's
    error code with -EINVAL; observed on 6.12.
    """

    def parse_einval(text: str) -> int:
        try:
            return parse(text)
        except DamonError as e:
            raise DamonError(errno.EINVAL, str(e)) from None

    return parse_einval
