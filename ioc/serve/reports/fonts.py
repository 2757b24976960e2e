"""The PDF's fonts: a TrueType face with Vietnamese glyphs.

fpdf2's built-in fonts are Latin-1 only ("Báo cáo tháng" would lose its ư and ạ), so the
report embeds a TTF: `IOC_REPORT_FONT` (and `IOC_REPORT_FONT_BOLD`) when set, else the first
system font found of DejaVu Sans (Debian and Ubuntu's fonts-dejavu-core, which the Docker
image installs; Fedora; Arch) and Arial (macOS, Windows). `ioc serve` checks at start, so a
missing font is one clear line, not a failed report at 06:00 on the 1st.
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


SYSTEM_FONTS = (  # (regular, bold) where operating systems put them
    ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
    ("/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf", "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans-Bold.ttf"),
    ("/usr/share/fonts/TTF/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans-Bold.ttf"),
    ("/System/Library/Fonts/Supplemental/Arial.ttf", "/System/Library/Fonts/Supplemental/Arial Bold.ttf"),
    ("C:/Windows/Fonts/arial.ttf", "C:/Windows/Fonts/arialbd.ttf"),
)


def report_fonts(settings: Settings) -> Fonts:
    """The fonts the settings name, else the first system pair found; SettingsError if none."""
    if settings.report_font:
        regular = check_font(Path(settings.report_font), "IOC_REPORT_FONT")
        bold = settings.report_font_bold
        return Fonts(regular, check_font(Path(bold), "IOC_REPORT_FONT_BOLD") if bold else regular)
    for reg, bold in SYSTEM_FONTS:
        if Path(reg).is_file():
            regular = check_font(Path(reg), "IOC_REPORT_FONT")
            return Fonts(regular, check_font(Path(bold), "IOC_REPORT_FONT_BOLD") if Path(bold).is_file() else regular)
    raise SettingsError("IOC_REPORT_FONT: no font with Vietnamese letters found (looked for DejaVu Sans and Arial): "
                        "install Debian's fonts-dejavu-core (apt-get install fonts-dejavu-core) or set IOC_REPORT_FONT "
                        "to a TrueType font with Vietnamese letters")
