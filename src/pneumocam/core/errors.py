"""Errors that the command line prints as one clear message, never as a traceback."""


class PneumocamError(Exception):
    """Base class: a problem with the user's input that names the problem and the fix."""


class DataError(PneumocamError):
    """The dataset (root, split, class folder, manifest) is not usable as given."""


class WeightsError(PneumocamError):
    """Model weights could not be found, read or matched to the architecture."""


class CheckpointError(PneumocamError):
    """A checkpoint file is missing, unreadable or of an unknown format."""


class StatsInputError(PneumocamError):
    """A scores table cannot be tested as given."""


class SettingError(PneumocamError, ValueError):
    """A setting holds a value the library cannot use. The library names the setting as its code does
    ("class_weights must be ..."); the command line shows the option instead ("--class-weights must be ...")."""

    def __init__(self, setting: str, problem: str):
        self.setting, self.problem = setting, problem
        super().__init__(f"{setting} {problem}")

    def as_option(self) -> str:
        return f"--{self.setting.replace('_', '-')} {self.problem}"
