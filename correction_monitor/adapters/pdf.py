"""Rendering an evidence document (``domain/evidence.py``) as a printable A4 PDF, with
ReportLab.

The Chinese is real text: the font (Noto Sans SC, a TrueType font under the SIL Open Font
License, from the npm package ``@expo-google-fonts/noto-sans-sc`` that ``python3 dev.py``
installs into ``fonts/node_modules``) is embedded as subsets of the glyphs the document uses
(``FontFile2``), each with a ToUnicode map, so the text can be searched, copied and
extracted, and prints the same on any machine. ``CM_PDF_FONT`` names another TrueType file.

Why ReportLab and not WeasyPrint: see docs/decisions.md (a wheel with no system libraries,
and about ten times faster on the same document).
"""

from __future__ import annotations

import hashlib
import io
import threading
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from reportlab.graphics.shapes import Circle, Drawing, Line, Polygon, PolyLine, Rect, String
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    Flowable,
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from correction_monitor.domain.evidence import EvidenceDocument, MapView

# Where ``python3 dev.py`` puts the font (fonts/package.json, npm ci).
DEFAULT_FONT = (
    Path(__file__).resolve().parents[2]
    / "fonts"
    / "node_modules"
    / "@expo-google-fonts"
    / "noto-sans-sc"
    / "400Regular"
    / "NotoSansSC_400Regular.ttf"
)
PAGE_WIDTH, PAGE_HEIGHT = A4
MARGIN = 18 * mm
# The map's box: the text column's width, two thirds of it high.
MAP_WIDTH = PAGE_WIDTH - 2 * MARGIN
MAP_HEIGHT = MAP_WIDTH * 2 / 3

FENCE_COLOUR = colors.HexColor("#c0392b")
PATH_COLOUR = colors.HexColor("#1f5fa8")
START_COLOUR = colors.HexColor("#1e8449")
GRID_COLOUR = colors.HexColor("#999999")

_register_lock = threading.Lock()
_registered: dict[tuple[str, int, float], str] = {}


class FontMissing(Exception):
    """The CJK font file is not where it should be (``npm ci`` in fonts/ not run, or
    ``CM_PDF_FONT`` naming a missing file)."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"the PDF font {path} is missing")
        self.path = path


def font_file(configured: Path | None) -> Path:
    """The font to embed: ``configured`` (``CM_PDF_FONT``) when set, else the npm package's;
    FontMissing when that file does not exist."""
    path = configured if configured is not None else DEFAULT_FONT
    if not path.is_file():
        raise FontMissing(path)
    return path


def register_font(path: Path) -> str:
    """Register the TrueType file at ``path`` with ReportLab once per process (per version
    of the file); the name to set text in. FontMissing when it is gone."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise FontMissing(path) from exc
    key = (str(path.resolve()), stat.st_size, stat.st_mtime)
    with _register_lock:
        name = _registered.get(key)
        if name is None:
            name = "EvidenceCJK-" + hashlib.sha256(repr(key).encode()).hexdigest()[:10]
            pdfmetrics.registerFont(TTFont(name, str(path)))
            _registered[key] = name
    return name


def _styles(font: str) -> dict[str, ParagraphStyle]:
    base = ParagraphStyle("body", fontName=font, fontSize=10, leading=15, wordWrap="CJK")
    return {
        "body": base,
        "small": ParagraphStyle("small", parent=base, fontSize=8.5, leading=12),
        "title": ParagraphStyle(
            "title", parent=base, fontSize=17, leading=24, alignment=TA_CENTER, spaceAfter=4
        ),
        "subtitle": ParagraphStyle(
            "subtitle", parent=base, fontSize=9.5, alignment=TA_CENTER, spaceAfter=10
        ),
        "heading": ParagraphStyle(
            "heading", parent=base, fontSize=12.5, leading=18, spaceBefore=10, spaceAfter=5
        ),
    }


def paragraph(text: str, style: ParagraphStyle) -> Paragraph:
    """A paragraph of plain text (ReportLab reads markup: escape it)."""
    return Paragraph(escape(text).replace("\n", "<br/>"), style)


def grid_table(
    rows: list[list[Any]], widths: list[float], *, header: bool, padding: float = 4
) -> Table:
    """A ruled table of ``rows`` (the first a shaded header row repeated on every page when
    ``header``)."""
    table = Table(rows, colWidths=widths, repeatRows=1 if header else 0)
    commands: list[Any] = [
        ("GRID", (0, 0), (-1, -1), 0.4, GRID_COLOUR),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), padding),
        ("RIGHTPADDING", (0, 0), (-1, -1), padding),
    ]
    if header:
        commands.append(("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")))
    table.setStyle(TableStyle(commands))
    return table


def _rect(
    x: float, y: float, w: float, h: float, *, stroke: colors.Color, fill: colors.Color | None
) -> Rect:
    """A rectangle with these colours (set after construction: the type stubs take no
    colours as keywords of ``Rect``)."""
    rect = Rect(x, y, w, h)
    rect.strokeColor = stroke
    rect.fillColor = fill
    return rect


def map_frame(width: float, height: float) -> Drawing:
    """An empty map of ``width`` × ``height`` points: its frame only."""
    drawing = Drawing(width, height)
    drawing.add(_rect(0, 0, width, height, stroke=GRID_COLOUR, fill=None))
    return drawing


def add_scale_and_north(drawing: Drawing, scale_bar: tuple[float, str], font: str) -> None:
    """A map's scale bar (lower left; ``scale_bar`` is its length in points and its label)
    and north mark (upper right), drawn over what the map holds."""
    bar, label = scale_bar
    x0, y0 = 12.0, 12.0
    drawing.add(Line(x0, y0, x0 + bar, y0, strokeColor=colors.black, strokeWidth=1.5))
    for x in (x0, x0 + bar):
        drawing.add(Line(x, y0, x, y0 + 4, strokeColor=colors.black, strokeWidth=1))
    drawing.add(String(x0 + bar + 4, y0 - 2, label, fontName=font, fontSize=8))
    north_x, north_y = drawing.width - 16, drawing.height - 26
    drawing.add(
        Polygon(
            [north_x - 4, north_y, north_x + 4, north_y, north_x, north_y + 10],
            fillColor=colors.black,
            strokeColor=None,
        )
    )
    drawing.add(String(north_x - 4.5, north_y - 11, "北", fontName=font, fontSize=8))


def map_drawing(view: MapView, font: str) -> Drawing:
    """The episode's map: frame, fence outlines, the path of fixes and each fix, start
    (起) and end (止) marks, a north mark and the scale bar."""
    drawing = map_frame(view.width, view.height)
    for ring in view.fences:
        points = [c for pt in ring for c in pt]
        drawing.add(
            Polygon(
                points,
                strokeColor=FENCE_COLOUR,
                strokeWidth=1.2,
                fillColor=colors.Color(0.75, 0.22, 0.17, alpha=0.06),
            )
        )
    if len(view.path) >= 2:
        drawing.add(
            PolyLine([c for pt in view.path for c in pt], strokeColor=PATH_COLOUR, strokeWidth=0.6)
        )
    for x, y in view.path:
        drawing.add(Circle(x, y, 1.1, fillColor=PATH_COLOUR, strokeColor=None))
    if view.path:
        (sx, sy), (ex, ey) = view.path[0], view.path[-1]
        drawing.add(Circle(sx, sy, 4, fillColor=START_COLOUR, strokeColor=colors.white))
        drawing.add(String(sx + 6, sy + 2, "起", fontName=font, fontSize=9))
        drawing.add(_rect(ex - 4, ey - 4, 8, 8, stroke=colors.white, fill=FENCE_COLOUR))
        drawing.add(String(ex + 6, ey + 2, "止", fontName=font, fontSize=9))
    add_scale_and_north(drawing, view.scale_bar, font)
    return drawing


class _NumberedCanvas(Canvas):
    """A canvas that writes 第 N 页 / 共 M 页 and the generation time on every page once it
    knows how many pages there are."""

    font = "Helvetica"
    footer = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pages: list[dict[str, Any]] = []

    def showPage(self) -> None:  # noqa: N802 - ReportLab's name
        self._pages.append(dict(self.__dict__))
        self._startPage()  # type: ignore[attr-defined]  # ReportLab's own, not in its stubs

    def save(self) -> None:
        total = len(self._pages)
        for number, state in enumerate(self._pages, start=1):
            self.__dict__.update(state)
            self.setFont(self.font, 8)
            self.setFillColor(colors.HexColor("#555555"))
            self.drawString(MARGIN, 10 * mm, self.footer)
            self.drawRightString(PAGE_WIDTH - MARGIN, 10 * mm, f"第 {number} 页 / 共 {total} 页")
            super().showPage()
        super().save()


def _canvas_for(font: str, footer: str) -> type[_NumberedCanvas]:
    return type("EvidenceCanvas", (_NumberedCanvas,), {"font": font, "footer": footer})


def render_pdf(document: EvidenceDocument, font_path: Path) -> bytes:
    """The document as PDF bytes (A4 portrait, zh-CN, the font embedded as subsets)."""
    font = register_font(font_path)
    styles = _styles(font)
    out = io.BytesIO()
    template = SimpleDocTemplate(
        out,
        pagesize=A4,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=MARGIN + 4 * mm,
        title=document.title,
        author="社区矫正机构",
        subject=f"{document.reference} {document.subject.name}",
        lang="zh-CN",
    )
    body, small = styles["body"], styles["small"]
    width = MAP_WIDTH
    story: list[Flowable] = [
        paragraph(document.title, styles["title"]),
        paragraph(f"{document.reference}　　生成时间 {document.generated_at}", styles["subtitle"]),
        paragraph("一、社区矫正对象", styles["heading"]),
        grid_table(
            [
                [paragraph("姓名", body), paragraph(document.subject.name, body)],
                [paragraph("矫正类别", body), paragraph(document.subject.category, body)],
                [paragraph("监管等级", body), paragraph(document.subject.level, body)],
                [paragraph("司法所", body), paragraph(document.subject.station, body)],
                [paragraph("矫正期限", body), paragraph(document.subject.term, body)],
            ],
            [width * 0.22, width * 0.78],
            header=False,
        ),
        paragraph("二、建议措施及依据", styles["heading"]),
        grid_table(
            [
                [paragraph("建议措施", body), paragraph(document.measure, body)],
                [paragraph("法律依据", body), paragraph(document.article, body)],
                [paragraph("办理状态", body), paragraph(document.status, body)],
            ],
            [width * 0.22, width * 0.78],
            header=False,
        ),
        Spacer(1, 6),
        paragraph("事实与理由：", body),
        *[paragraph(f"{n}. {ground}", body) for n, ground in enumerate(document.grounds, start=1)],
        paragraph("三、事实经过（按时间顺序）", styles["heading"]),
    ]
    if document.facts:
        rows: list[list[Any]] = [
            [paragraph("时间", small), paragraph("类别", small), paragraph("内容", small)]
        ]
        rows += [
            [paragraph(f.when, small), paragraph(f.kind, small), paragraph(f.text, small)]
            for f in document.facts
        ]
        story.append(grid_table(rows, [width * 0.2, width * 0.08, width * 0.72], header=True))
    else:
        story.append(paragraph("无记录。", body))
    heading = paragraph("四、定位轨迹图", styles["heading"])
    if document.map is not None:
        drawing = map_drawing(document.map, font)
        story.append(KeepTogether([heading, drawing, paragraph(document.map.caption, small)]))
    else:
        story += [heading, paragraph("该时段内没有定位记录，也没有可绘制的电子围栏。", body)]
    story.append(paragraph("五、处理与决定经过", styles["heading"]))
    rows = [
        [
            paragraph("时间", small),
            paragraph("人员", small),
            paragraph("事项", small),
            paragraph("意见", small),
        ]
    ]
    rows += [
        [
            paragraph(d.when, small),
            paragraph(d.who, small),
            paragraph(d.what, small),
            paragraph(d.note or "—", small),
        ]
        for d in document.decisions
    ]
    story.append(
        grid_table(rows, [width * 0.2, width * 0.14, width * 0.4, width * 0.26], header=True)
    )
    story.append(Spacer(1, 10))
    story.append(
        paragraph(
            "本材料由社区矫正信息化监管系统根据存档记录生成；定位数据仅用于社区矫正监督管理"
            "（《社区矫正法》第二十六条），本次导出已记入审计日志。",
            small,
        )
    )
    footer = f"{document.reference} · {document.subject.name} · 生成于 {document.generated_at}"
    template.build(story, canvasmaker=_canvas_for(font, footer))
    return out.getvalue()
