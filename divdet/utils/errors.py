"""The errors divdet raises for inputs it cannot use.

Each message says what was expected, what was found and where (file, image,
annotation, checkpoint key). ``tools/train.py`` and ``tools/test.py`` print
these as one ``divdet: error: ...`` line and exit with status 2 instead of a
traceback; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


def one_line(err: BaseException) -> str:
    """An exception's message on one line (cv2's span several), else its type's name."""
    return ' '.join(str(err).split()) or type(err).__name__


class DivdetError(Exception):
    """Base class of the errors that mean "fix your input", not "divdet crashed".

    The message is always one line (line breaks of quoted messages, e.g.
    cv2's, become spaces), so that it survives a DataLoader worker's re-raise.
    """

    def __str__(self) -> str:
        return ' '.join(line.strip() for line in super().__str__().splitlines() if line.strip())


class MissingFileError(DivdetError, FileNotFoundError):
    """A file named on the command line or in a config does not exist."""


class ConfigError(DivdetError, ValueError):
    """A config asks for something divdet cannot build (e.g. an unsupported S)."""


class AnnotationError(DivdetError, ValueError):
    """A COCO annotation file is missing, malformed, or inconsistent with the config."""


class ImageError(DivdetError, ValueError):
    """An image is missing, unreadable or has the wrong number of channels."""


class CheckpointMismatchError(DivdetError, ValueError):
    """A checkpoint's members or architecture differ from the config's model."""


class CheckpointWriteError(DivdetError, OSError):
    """A checkpoint could not be written (full disk, quota, read-only folder)."""


class OutputError(DivdetError, OSError):
    """A result file or folder cannot be written (full disk, read-only, a folder, under a file)."""


class FusionInputError(DivdetError, ValueError):
    """Detections to fuse are not finite, or a fusion weight is not positive."""


class NonFiniteLossError(DivdetError, FloatingPointError):
    """A training loss became NaN or infinite; no update was applied."""


def first_items(items, n: int = 3, sep: str = ', ') -> str:
    """The first ``n`` of ``items`` for a message, with how many more there are."""
    items = list(items)
    more = f' (and {len(items) - n} more)' if len(items) > n else ''
    return sep.join(str(i) for i in items[:n]) + more


def brief(error: BaseException) -> str:
    """The one-line message of ``error``, without a DataLoader worker's traceback.

    An error raised in a DataLoader worker is re-raised in the main process
    with the worker's traceback folded into its message; the last line holds
    the original message.
    """
    text = str(error.args[0]) if len(error.args) == 1 else str(error)
    if 'Original Traceback' in text:
        lines = [line for line in text.splitlines() if line.strip()]
        text = lines[-1].split(': ', 1)[-1] if lines else text
    return ' '.join(line.strip() for line in text.splitlines() if line.strip())
