"""The errors mfrec reports to users: each message says what is wrong and what would be valid."""


class MfrecError(Exception):
    """Base class: the command-line entry points print these without a traceback and exit non-zero."""


class ConfigError(MfrecError):
    """A config value is missing, unknown or out of range."""

    def __init__(self, key: str, message: str):
        self.key, self.message = key, message
        super().__init__(f"config key '{key}': {message}")

    def __reduce__(self):  # picklable, for runs in other processes (e.g. hydra/launcher=joblib)
        return type(self), (self.key, self.message)


class DataError(MfrecError):
    """A ratings source could not be read or holds invalid ratings."""


class DivergenceError(MfrecError):
    """The training loss became NaN or infinite."""


class Interrupted(MfrecError):
    """Training stopped on a signal after checkpointing; the exit status is 128 + the signal number."""

    def __init__(self, message: str, signum: int):
        self.signum, self.exit_code = signum, 128 + signum
        super().__init__(message)

    def __reduce__(self):
        return type(self), (str(self), self.signum)
