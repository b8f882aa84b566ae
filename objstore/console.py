"""The console window of a double-clicked executable: keep a fatal error readable.

Owns one question, whether objstore owns its console window (Windows opens a
new one for a double-clicked console program and closes it when the program
exits), and the pause that keeps the last message on screen. Started from a
terminal, a script or a service, objstore never waits for a key.
"""

from __future__ import annotations

import contextlib
import sys

__all__ = ["owns_console_window", "pause_if_double_clicked"]


def owns_console_window(console_processes: int, frozen: bool) -> bool:
    """True when no program but objstore itself is attached to its console.

    A one-file executable runs as two processes (the bootloader and the server),
    so a frozen objstore alone on its console counts two; a terminal or a
    script that started it adds its own process to the count.
    """
    return 0 < console_processes <= (2 if frozen else 1)


def _console_process_count() -> int:
    if sys.platform != "win32":
        return 0
    import ctypes

    processes = (ctypes.c_uint32 * 4)()
    return int(ctypes.windll.kernel32.GetConsoleProcessList(processes, 4))


def pause_if_double_clicked() -> None:
    """On Windows, wait for Enter when the window would vanish with the message in it.

    macOS Terminal keeps the window of a program that exits with an error, and
    Linux desktops rarely start console programs by double-click, so only
    Windows needs this.
    """
    if not owns_console_window(_console_process_count(), getattr(sys, "frozen", False)):
        return
    with contextlib.suppress(EOFError, KeyboardInterrupt):
        input("Press Enter to close this window.")
