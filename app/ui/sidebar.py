"""The conversation list with search, and the actions on a conversation (context menu).

Searching runs in the store (FTS5) off the GUI thread; the sidebar only shows results.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QPoint, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.core.conversation import Conversation, SearchHit

ID_ROLE = Qt.ItemDataRole.UserRole
SEARCH_DELAY_MS = 150


class Sidebar(QWidget):
    conversationSelected = Signal(int)
    newRequested = Signal()
    searchChanged = Signal(str)
    renameRequested = Signal(int)
    deleteRequested = Signal(int)
    exportRequested = Signal(int)
    instructionsRequested = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.new_button = QPushButton("New chat", self)
        self.new_button.setAccessibleName("New conversation")
        self.new_button.setToolTip("Start a new conversation (Ctrl+N)")
        self.new_button.clicked.connect(self.newRequested)
        self.search = QLineEdit(self)
        self.search.setPlaceholderText("Search conversations (Ctrl+F)")
        self.search.setAccessibleName("Search conversations")
        self.search.setClearButtonEnabled(True)
        clear = self.search.findChild(QToolButton)  # Qt's own clear button has no name to speak
        if clear is not None:
            clear.setAccessibleName("Clear search")
            clear.setToolTip("Clear search")
        self.list = QListWidget(self)
        self.list.setAccessibleName("Conversations")
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._menu)
        self.list.itemActivated.connect(self._activated)
        self.list.itemClicked.connect(self._activated)
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(SEARCH_DELAY_MS)
        self._debounce.timeout.connect(lambda: self.searchChanged.emit(self.search.text()))
        self.search.textChanged.connect(lambda _: self._debounce.start())
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 4, 8)
        layout.addWidget(self.new_button)
        layout.addWidget(self.search)
        layout.addWidget(self.list, 1)

    def set_conversations(self, conversations: Sequence[Conversation], current: int | None) -> None:
        self.list.clear()
        for conversation in conversations:
            item = QListWidgetItem(conversation.title or "Untitled")
            item.setData(ID_ROLE, conversation.id)
            item.setToolTip(conversation.title)
            self.list.addItem(item)
            if conversation.id == current:
                self.list.setCurrentItem(item)

    def set_search_results(self, hits: Sequence[SearchHit]) -> None:
        self.list.clear()
        for hit in hits:
            snippet = " ".join(hit.snippet.split())
            item = QListWidgetItem(f"{hit.title}\n  {snippet}" if snippet else hit.title)
            item.setData(ID_ROLE, hit.conversation_id)
            self.list.addItem(item)
        if not hits:
            empty = QListWidgetItem("No matches")
            empty.setFlags(Qt.ItemFlag.NoItemFlags)
            self.list.addItem(empty)

    def select(self, conversation_id: int | None) -> None:
        for row in range(self.list.count()):
            item = self.list.item(row)
            if item.data(ID_ROLE) == conversation_id:
                self.list.setCurrentItem(item)
                return
        self.list.clearSelection()

    def selected_id(self) -> int | None:
        item = self.list.currentItem()
        value = item.data(ID_ROLE) if item is not None else None
        return int(value) if value is not None else None

    def _activated(self, item: QListWidgetItem) -> None:
        value = item.data(ID_ROLE)
        if value is not None:
            self.conversationSelected.emit(int(value))

    def _menu(self, pos: QPoint) -> None:
        item = self.list.itemAt(pos)
        if item is None or item.data(ID_ROLE) is None:
            return
        cid = int(item.data(ID_ROLE))
        menu = QMenu(self)
        menu.addAction("Rename…", lambda: self.renameRequested.emit(cid))
        menu.addAction("Instructions…", lambda: self.instructionsRequested.emit(cid))
        menu.addAction("Export…", lambda: self.exportRequested.emit(cid))
        menu.addSeparator()
        menu.addAction("Delete", lambda: self.deleteRequested.emit(cid))
        menu.exec(self.list.mapToGlobal(pos))
