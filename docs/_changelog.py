"""Turn the Keep a Changelog CHANGELOG.md into reStructuredText for the docs.

Sphinx here has no Markdown parser (no myst), so ``conf.py`` converts the
small Markdown subset a changelog uses: ``#``/``##``/``###`` headings, ``-``
bullets (nested by indentation, continued on indented lines), paragraphs,
```code```, ``**bold**`` and ``[text](url)`` links. Everything else is
escaped, so that no stray ``*`` or ``name__`` becomes reStructuredText markup
and the build stays clean with ``-W``.
"""

import re

__all__ = ["markdown_to_rst"]

_UNDERLINES = {1: "=", 2: "-", 3: "~", 4: "^"}
_INLINE = re.compile(
    r"(?P<code>`+)(?P<code_text>.+?)(?P=code)"
    r"|\[(?P<link_text>[^\]]+)\]\((?P<url>[^)\s]+)\)"
    r"|\*\*(?P<bold>[^*]+)\*\*"
)
# Characters that may precede an inline markup start / follow its end.
_OPENERS = "-:/'\"<([{"
_CLOSERS = "-.,:;!?\\/'\")]}>"
_LINK_DEFINITION = re.compile(r"^\s*\[[^\]]+\]:\s*\S+\s*$")
_BULLET = re.compile(r"^(?P<indent>\s*)[-*+]\s+(?P<text>.*)$")
_HEADING = re.compile(r"^(?P<level>#{1,4})\s+(?P<text>.*?)\s*#*\s*$")


def _escape(text):
    return re.sub(r"([\\`*_|<>\[\]])", r"\\\1", text)


def _inline(text):
    """Convert inline Markdown to reStructuredText, escaping the rest."""
    out, pos = [], 0
    for match in _INLINE.finditer(text):
        out.append(_escape(text[pos:match.start()]))
        if match.group("code"):
            code = match.group("code_text").strip()
            markup = f"``{code}``" if code else ""
        elif match.group("url"):
            label = match.group("link_text").replace("`", "")
            label = re.sub(r"([<>])", r"\\\1", label)
            markup = f"`{label} <{match.group('url')}>`__"
        else:
            markup = f"**{_escape(match.group('bold').strip())}**"
        # "\ " (an escaped space) lets markup touch neighbouring characters.
        before = text[match.start() - 1] if match.start() else " "
        after = text[match.end()] if match.end() < len(text) else " "
        if markup and not (before.isspace() or before in _OPENERS):
            markup = "\\ " + markup
        if markup and not (after.isspace() or after in _CLOSERS):
            markup += "\\ "
        out.append(markup)
        pos = match.end()
    out.append(_escape(text[pos:]))
    return "".join(out).strip()


def markdown_to_rst(markdown):
    """Return ``markdown`` (a Keep a Changelog file) as reStructuredText.

    Parameters
    ----------
    markdown : str
        The Markdown text.

    Returns
    -------
    rst : str
        reStructuredText with the same headings, lists and paragraphs.
    """
    lines = []
    item = None  # [indent_level, text] of the bullet being read
    paragraph = []

    def flush():
        nonlocal item
        if item is not None:
            level, text = item
            lines.extend(["", "  " * level + "* " + _inline(text), ""])
            item = None
        if paragraph:
            lines.extend(["", _inline(" ".join(paragraph)), ""])
            paragraph.clear()

    indents = []
    for raw in markdown.splitlines():
        if _LINK_DEFINITION.match(raw):
            continue
        heading = _HEADING.match(raw)
        bullet = _BULLET.match(raw)
        if heading:
            flush()
            indents.clear()
            text = _inline(re.sub(r"\[([^\]]*)\]", r"\1", heading.group("text")))
            underline = _UNDERLINES[len(heading.group("level"))]
            lines.extend(["", text, underline * max(len(text), 4), ""])
        elif bullet:
            flush()
            indent = len(bullet.group("indent").expandtabs(4))
            while indents and indents[-1] > indent:
                indents.pop()
            if not indents or indents[-1] < indent:
                indents.append(indent)
            item = [len(indents) - 1, bullet.group("text")]
        elif not raw.strip():
            flush()
            indents.clear()
        elif item is not None:
            item[1] += " " + raw.strip()
        else:
            paragraph.append(raw.strip())
    flush()
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
