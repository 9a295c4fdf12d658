"""MkDocs hook: the site's home page is the README, its links made relative to docs/ (one text, no copy to drift)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri != "index.md":
        return markdown
    text = README.read_text()
    text = text.replace("](docs/", "](")
    # files outside docs/ are not pages of the site: named, not linked
    return re.sub(r"\[([^\]]+)\]\((?!https?:)([^)#]+\.md)\)", lambda m: m.group(0) if (
        Path(config["docs_dir"]) / m.group(2)).exists() else f"`{m.group(2)}`", text)
