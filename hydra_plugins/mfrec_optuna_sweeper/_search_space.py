"""The search space, written in Hydra's override grammar, as Optuna distributions.

``choice(16, 32, 64)`` or ``16,32,64`` -> categorical; ``range(1, 10)`` -> integers (or stepped
floats); ``interval(1e-4, 1e-1)`` -> floats; ``tag(log, ...)`` samples on a log scale and
``tag(int, interval(8, 128))`` samples integers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override, QuotedString, RangeSweep, Transformer
from hydra.errors import HydraException
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from mfrec.errors import ConfigError

TAGS = {"log", "int"}


@dataclass
class Dimension:
    """One searched config key: its Optuna distribution and how a sampled value is written as an override."""

    name: str  # the key, as Optuna records it, e.g. optimizer.lr
    key: str  # the override's key element, with its + or @package if any
    distribution: BaseDistribution
    # For a categorical: each choice as override text (a list or dict choice is recorded by Optuna as this text).
    choice_texts: list[str] = field(default_factory=list)

    def override(self, value: Any) -> str:
        if self.choice_texts:
            return f"{self.key}={self.choice_texts[int(self.distribution.to_internal_repr(value))]}"
        return f"{self.key}={Transformer.str(value)}"

    def some_value(self) -> Any:
        """A value inside the distribution (to check that the space composes before a study starts)."""
        if isinstance(self.distribution, CategoricalDistribution):
            return self.distribution.choices[0]
        return self.distribution.low


@dataclass
class SearchSpace:
    dimensions: list[Dimension]
    fixed: list[str]  # overrides every trial gets, e.g. hparams_search=ml100k trainer.max_epochs=10

    @property
    def distributions(self) -> dict[str, BaseDistribution]:
        return {dimension.name: dimension.distribution for dimension in self.dimensions}

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        return [*self.fixed, *(dimension.override(params[dimension.name]) for dimension in self.dimensions)]


def parse_search_space(params: Mapping[str, Any], arguments: Iterable[str], parser: OverridesParser) -> SearchSpace:
    """The sweeper's ``params`` followed by the command line's overrides, the later of two for a key winning.

    So on the command line ``key=value`` fixes a searched key and ``key=a,b`` or ``key=interval(0, 1)``
    searches (or re-searches) it; any other override is passed to every trial.
    """
    lines = [f"{key}={value}" for key, value in params.items()] + list(arguments)
    try:
        overrides = parser.parse_overrides(lines)
    except HydraException as error:
        raise ConfigError("hydra.sweeper.params", str(error)) from None
    by_name: dict[str, Override] = {}
    for override in overrides:
        name = override.get_key_element().lstrip("+~")
        by_name.pop(name, None)  # the later one takes the later place
        by_name[name] = override
    dimensions, fixed = [], []
    for name, override in by_name.items():
        if override.is_sweep_override():
            dimensions.append(_dimension(name, override))
        else:
            fixed.append(override.input_line)
    return SearchSpace(dimensions, fixed)


def _dimension(name: str, override: Override) -> Dimension:
    sweep = override.value()
    tags = getattr(sweep, "tags", set())
    where = f"in '{override.input_line}'"
    if tags - TAGS:
        raise ConfigError(name, f"{where}: unknown tag {', '.join(sorted(tags - TAGS))}; valid tags: {', '.join(sorted(TAGS))}")
    log, integer = "log" in tags, "int" in tags
    try:
        if isinstance(sweep, IntervalSweep):
            if integer:
                return Dimension(name, override.get_key_element(), IntDistribution(int(sweep.start), int(sweep.end), log=log))
            return Dimension(name, override.get_key_element(), FloatDistribution(sweep.start, sweep.end, log=log))
        if isinstance(sweep, RangeSweep):
            values = list(override.sweep_iterator())
            if not values:
                raise ValueError("the range is empty")
            low, high, step = min(values), max(values), abs(sweep.step)
            if all(isinstance(value, int) for value in values) and isinstance(step, int):
                return Dimension(name, override.get_key_element(), IntDistribution(low, high, step=step, log=log))
            return Dimension(name, override.get_key_element(), FloatDistribution(low, high, step=step, log=log))
        if tags:
            raise ValueError("choice() takes no tags")
        return _categorical(name, override)  # choice(a, b), a,b or glob(...)
    except ValueError as error:  # Optuna's own checks, e.g. a log scale from 0
        raise ConfigError(name, f"{where}: {error}") from None


def _categorical(name: str, override: Override) -> Dimension:
    elements = list(override.sweep_iterator())
    texts = [Transformer.str(element) for element in elements]
    # Optuna records plain values as they are; a list or dict choice is recorded as its text.
    choices = [
        element.text if isinstance(element, QuotedString)
        else element if element is None or isinstance(element, (str, int, float, bool))
        else text
        for element, text in zip(elements, texts)
    ]
    if len(set(map(repr, choices))) != len(choices):
        raise ValueError("a choice is given twice")
    return Dimension(name, override.get_key_element(), CategoricalDistribution(choices), texts)
