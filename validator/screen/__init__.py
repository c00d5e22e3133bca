"""The validator's screen: a local web page with the answer, the list's state and a keypad."""

from validator.screen.app import BOARD, KEYPAD, KeypadHandler, make_screen_app

__all__ = ["BOARD", "KEYPAD", "KeypadHandler", "make_screen_app"]
