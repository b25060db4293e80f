"""What every controller of the app may use, handed down from the composition root (``app.py``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from client_gui.engine.preferences import Preferences
    from client_gui.ui.background import Background
    from client_gui.ui.earnings_model import EarningsModel
    from client_gui.ui.engine_controller import EngineController
    from client_gui.ui.session import AppSession


@dataclass
class AppContext:
    """The app's shared collaborators. Controllers take this, never "the app".

    * ``session``: the signed-in person (blocking calls: run them through ``background``);
    * ``background``: runs blocking calls off the GUI thread, delivers outcomes on it;
    * ``engine``: the worker on this computer, as Qt signals and slots;
    * ``earnings``: balance and earnings from the ledger, refreshed in the background;
    * ``preferences`` / ``save_preferences``: the saved settings, read afresh and replaced whole.
    """

    session: AppSession
    background: Background
    engine: EngineController
    earnings: EarningsModel
    preferences: Callable[[], Preferences]
    save_preferences: Callable[[Preferences], None]
