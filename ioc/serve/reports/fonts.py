"""The PDF's fonts: a TrueType face with Vietnamese glyphs, from a path setting.

fpdf2's built-in fonts are Latin-1 only ("Báo cáo tháng" would lose its ư and ạ), so the
report embeds a TTF. The default is Debian's fonts-dejavu-core, present on most Linux
systems and in the Docker image; `IOC_REPORT_FONT` / `IOC_REPORT_FONT_BOLD` point elsewhere.
`ioc serve` checks them at start, so a missing font is one clear line, not a failed report
at 06:00 on the 1st.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fontTools.ttLib import TTFont, TTLibError

from ioc.core.settings import Settings, SettingsError

# letters a Vietnamese report cannot do without (ư, ơ, đ and stacked tone marks)
NEEDED = "ăâđêôơưẠạẢảẤấẦầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹĐ"


@dataclass(frozen=True)
class Fonts:
    regular: Path
    bold: Path


def check_font(path: Path, setting: str) -> Path:
    """The font at `path`, or SettingsError naming the setting and what is wrong."""
    hint = ("install Debian's fonts-dejavu-core (apt-get install fonts-dejavu-core) or point "
            f"{setting} at a TrueType font with Vietnamese letters")
    if not path.is_file():
        raise SettingsError(f"{setting}: {path} does not exist: {hint}")
    try:
        with TTFont(str(path), lazy=True) as font:
            cmap = font.getBestCmap() or {}
    except (OSError, TTLibError, AssertionError) as exc:
        raise SettingsError(f"{setting}: {path} is not a TrueType font ({exc}): {hint}") from None
    lacking = [c for c in NEEDED if ord(c) not in cmap]
    if lacking:
        raise SettingsError(f"{setting}: {path} lacks Vietnamese letters ({''.join(lacking[:10])}): {hint}")
    return path


def report_fonts(settings: Settings) -> Fonts:
    return Fonts(check_font(Path(settings.report_font), "IOC_REPORT_FONT"),
                 check_font(Path(settings.report_font_bold), "IOC_REPORT_FONT_BOLD"))
