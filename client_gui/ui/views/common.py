"""Small layout pieces the app's views share: a page title, a card (a titled group), a wrapped sentence,
a figure (big number with a caption)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QGroupBox, QLabel, QVBoxLayout, QWidget

ERROR_STYLE = "color: #b3261e;"
OK_STYLE = "color: #1e7f3c;"


def page_title(text: str) -> QLabel:
    label = QLabel(text)
    font = QFont(label.font())
    font.setPointSizeF(font.pointSizeF() * 1.5)
    font.setBold(True)
    label.setFont(font)
    return label


def sentence(text: str = "", *, error: bool = False) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    if error:
        label.setStyleSheet(ERROR_STYLE)
        label.setVisible(bool(text))
    return label


def show_error(label: QLabel, text: str) -> None:
    """Put a sentence in an error label, which takes no room while it has none."""
    label.setText(text)
    label.setVisible(bool(text))


def card(title: str) -> tuple[QGroupBox, QVBoxLayout]:
    box = QGroupBox(title)
    layout = QVBoxLayout(box)
    layout.setSpacing(8)
    return box, layout


def figure(caption: str) -> tuple[QWidget, QLabel]:
    """A big value over a small caption; returns (widget, value label)."""
    widget = QWidget()
    layout = QVBoxLayout(widget)
    layout.setContentsMargins(0, 0, 0, 0)
    value = QLabel("—")
    font = QFont(value.font())
    font.setPointSizeF(font.pointSizeF() * 1.6)
    font.setBold(True)
    value.setFont(font)
    small = QLabel(caption)
    small.setStyleSheet("color: palette(mid);")
    layout.addWidget(value)
    layout.addWidget(small)
    return widget, value
