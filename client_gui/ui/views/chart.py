"""A small bar chart painted with QPainter (QtCharts would add megabytes to the installer for one chart).

Each bar has a label under it and a sentence (its tooltip); the sentences together are the chart's
accessible description, so a screen reader can read what the bars show.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QEvent, QPoint, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFontMetrics, QHelpEvent, QPainter, QPaintEvent, QPalette
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

MARGIN = 8
GAP_RATIO = 0.35
"""The share of each bar's slot left empty between bars."""


@dataclass(frozen=True)
class Bar:
    label: str
    """Under the bar, e.g. "Mon"."""
    value: int
    """Any non-negative integer unit (micro-CPT for earnings)."""
    description: str
    """The tooltip and accessible text, e.g. "Monday 23 November: 0.0125 CPT"."""
    highlight: bool = False
    value_text: str = ""
    """Written above the bar when it is not empty, e.g. "0.0125"."""


class BarChart(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._bars: list[Bar] = []
        self._empty_text = "Nothing yet."
        self.setMinimumHeight(140)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAccessibleName("Chart")

    def set_bars(self, bars: list[Bar], *, empty_text: str = "Nothing yet.") -> None:
        self._bars = list(bars)
        self._empty_text = empty_text
        self.setAccessibleDescription("; ".join(b.description for b in self._bars))
        self.update()

    def bars(self) -> list[Bar]:
        return list(self._bars)

    def sizeHint(self) -> QSize:
        return QSize(420, 180)

    # -- geometry ------------------------------------------------------------------------------------

    def _plot(self) -> QRectF:
        """The area the bars fill: below a line for the values, above a line for the labels."""
        line_h = QFontMetrics(self.font()).height() + 4
        return QRectF(
            MARGIN,
            MARGIN + line_h,
            self.width() - 2 * MARGIN,
            self.height() - 2 * MARGIN - 2 * line_h,
        )

    def bar_rect(self, index: int) -> QRectF:
        """Where bar ``index`` is drawn (its full height slot when the value is 0, for hit testing)."""
        plot = self._plot()
        slot = plot.width() / max(len(self._bars), 1)
        top = max((b.value for b in self._bars), default=0)
        value = self._bars[index].value
        height = plot.height() * value / top if top > 0 else 0.0
        x = plot.left() + slot * index + slot * GAP_RATIO / 2
        return QRectF(x, plot.bottom() - height, slot * (1 - GAP_RATIO), height)

    def bar_at(self, point: QPoint) -> int | None:
        """The index of the bar whose column contains ``point``, or None."""
        plot = self._plot()
        if not self._bars or not plot.left() <= point.x() <= plot.right():
            return None
        slot = plot.width() / len(self._bars)
        index = int((point.x() - plot.left()) // slot)
        return min(index, len(self._bars) - 1)

    def tooltip_at(self, point: QPoint) -> str:
        index = self.bar_at(point)
        return self._bars[index].description if index is not None else ""

    # -- Qt ------------------------------------------------------------------------------------------

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ToolTip and isinstance(event, QHelpEvent):
            text = self.tooltip_at(event.pos())
            if text:
                QToolTip.showText(event.globalPos(), text, self)
            else:
                QToolTip.hideText()
                event.ignore()
            return True
        return super().event(event)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        plot = self._plot()
        text_color = palette.color(QPalette.ColorRole.Text)
        painter.setPen(palette.color(QPalette.ColorRole.Mid))
        painter.drawLine(plot.bottomLeft(), plot.bottomRight())
        if not self._bars or all(b.value == 0 for b in self._bars):
            painter.setPen(palette.color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(plot, Qt.AlignmentFlag.AlignCenter, self._empty_text)
        accent = palette.color(QPalette.ColorRole.Highlight)
        muted = QColor(accent)
        muted.setAlpha(150)
        slot = plot.width() / max(len(self._bars), 1)
        label_top = plot.bottom() + 2
        for index, bar in enumerate(self._bars):
            rect = self.bar_rect(index)
            painter.setPen(text_color)
            if rect.height() > 0:
                painter.fillRect(rect, accent if bar.highlight else muted)
                if bar.value_text:
                    above = QRectF(plot.left() + slot * index, 0, slot, rect.top() - 2)
                    painter.drawText(
                        above,
                        Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignBottom,
                        bar.value_text,
                    )
            painter.drawText(
                QRectF(plot.left() + slot * index, label_top, slot, self.height() - label_top),
                Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop,
                bar.label,
            )
        painter.end()
