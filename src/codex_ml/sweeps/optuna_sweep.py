"""The Optuna sweep loop behind ``hydra/sweeper=optuna``.

The CLI maps that name to configs/hydra/sweeper/codex_optuna.yaml, whose plugin calls run_sweep.

Hydra's stock Optuna sweeper (hydra-optuna-sweeper) asks, launches and tells in batches of
``n_jobs``. This loop keeps its options and helpers (search space from overrides or
``hydra.sweeper.params``, samplers, grid, fixed params, ``max_failure_rate``) and changes four things:

- the study gets a pruner (``hydra.sweeper.pruner``, MedianPruner by default); the trial reports
  each evaluation's val loss (codex_ml.sweeps.pruning) and a pruned trial is told PRUNED, not FAIL;
- trial N runs as Hydra job N, so its run directory ``trial-<N>`` is the same on every re-run;
- a re-run counts the study's finished trials (COMPLETE or PRUNED) toward ``n_trials`` instead of
  running ``n_trials`` more;
- a trial a killed sweep left RUNNING is launched again with its own params (its run resumes
  from its checkpoint) instead of being replaced by a new one; a RUNNING trial whose run
  directory another live process holds (a second worker on the same storage) is left to it.
"""

from __future__ import annotations

import functools
import logging
import warnings
from pathlib import Path
from typing import Any

__all__ = ["build_quietly", "run_sweep"]

log = logging.getLogger(__name__)


def _states() -> tuple[Any, ...]:
    """The trial states that count toward n_trials: COMPLETE first, then PRUNED."""
    from optuna.trial import TrialState

    return (TrialState.COMPLETE, TrialState.PRUNED)


def run_sweep(impl: Any, arguments: list[str], pruner: Any) -> None:
    """Run the sweep of the stock sweeper ``impl`` (an OptunaSweeperImpl set up by Hydra)."""
    import optuna

    prefixes = _prefixes(arguments)
    space, fixed = _search_space(impl, [arg.lstrip("+") for arg in arguments])
    directions = impl._get_directions()
    sweep_dir = Path(str(impl.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)  # the sqlite storage lives in it
    study = optuna.create_study(study_name=impl.study_name, storage=impl.storage, sampler=impl.sampler,
                                directions=directions, load_if_exists=True, pruner=pruner)
    log.info("Study %s in %s: %d finished trial(s) of n_trials=%d", study.study_name, impl.storage,
             _finished(study), impl.n_trials)
    for frozen in _interrupted(study, sweep_dir):
        overrides = _prefixed([f"{k}={v}" for k, v in {**frozen.params, **fixed}.items()], prefixes)
        log.info("Resuming trial %d (left RUNNING): %s", frozen.number, " ".join(overrides))
        _tell_all(impl, study, [frozen.number], _launch(impl, [overrides], [frozen.number]), directions)
    to_go = impl.n_trials - _finished(study)
    while to_go > 0:
        batch = min(to_go, impl.n_jobs)
        trials = [study.ask() for _ in range(batch)]
        overrides = [_prefixed(job, prefixes) for job in impl._configure_trials(trials, space, fixed)]
        numbers = [t.number for t in trials]
        _tell_all(impl, study, numbers, _launch(impl, overrides, numbers), directions)
        to_go -= batch
    _save_results(impl, study, directions)


def build_quietly(node: Any) -> Any:
    """Instantiate a sampler/pruner config node without Optuna's FutureWarnings about options the
    stock sweeper's sampler configs still set to their defaults (None stays None)."""
    if node is None:
        return None
    from hydra.utils import instantiate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return instantiate(node)


def _prefixes(arguments: list[str]) -> dict[str, str]:
    """The ``+``/``++`` of each override's key. The CLI writes plain keys as ``++key=value``
    (codex_ml.cli.main); Optuna's param names leave it out, the jobs' overrides keep it."""
    return {arg.lstrip("+").split("=")[0]: arg[: len(arg) - len(arg.lstrip("+"))] for arg in arguments}


def _prefixed(overrides: Any, prefixes: dict[str, str]) -> list[str]:
    """``name=value`` overrides with the prefix the command line gave ``name``."""
    return [prefixes.get(o.split("=")[0], "") + o for o in overrides]


def _launch(impl: Any, overrides: list[list[str]], numbers: list[int]) -> list[Any]:
    """Launch trial ``numbers[i]`` as Hydra job ``numbers[i]`` (its directory is trial-<number>).
    A launcher numbers a batch consecutively; trials asked while another worker asks too may not be
    consecutive, and are then launched one by one."""
    first = numbers[0]
    if numbers == list(range(first, first + len(numbers))):
        return list(impl.launcher.launch(overrides, initial_job_idx=first))
    return [impl.launcher.launch([job], initial_job_idx=n)[0] for job, n in zip(overrides, numbers)]


def _search_space(impl: Any, arguments: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The distributions to sample and the fixed params, as the stock sweeper builds them."""
    import optuna
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    impl._process_searchspace_config()
    with warnings.catch_warnings():  # the stock code builds Optuna 2's distribution classes: see _modern
        warnings.simplefilter("ignore", FutureWarning)
        space, fixed = create_params_from_overrides([*impl._parse_sweeper_params_config(), *arguments])
    space = {**(impl.search_space_distributions or {}), **space}
    if isinstance(impl.sampler, functools.partial) and impl.sampler.func == optuna.samplers.GridSampler:
        grid = {name: impl._to_grid_sampler_choices(d) for name, d in space.items()}
        impl.sampler = impl.sampler(grid)
        size = 1
        for choices in grid.values():
            size *= len(choices)
        impl.n_trials = min(impl.n_trials, size)
    for name in fixed:
        space.pop(name, None)
    return {name: _modern(d) for name, d in space.items()}, fixed


def _modern(distribution: Any) -> Any:
    """Optuna 2's UniformDistribution & co. (what the stock sweeper builds) as Float/IntDistribution:
    the same space, without a FutureWarning each time a trial is stored or read back."""
    from optuna.distributions import FloatDistribution, IntDistribution

    for kind in (FloatDistribution, IntDistribution):
        if isinstance(distribution, kind) and type(distribution) is not kind:
            return kind(distribution.low, distribution.high, log=distribution.log, step=distribution.step)
    return distribution


def _finished(study: Any) -> int:
    return len(study.get_trials(deepcopy=False, states=_states()))


def _interrupted(study: Any, sweep_dir: Path) -> list[Any]:
    """RUNNING trials no live process is training (their run directory's lock is free)."""
    from optuna.trial import TrialState

    from codex_ml.sweeps.trial import trial_name
    from codex_ml.tracking.run_lock import holder_of

    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if holder_of(sweep_dir / trial_name(t.number)) is None]


def _tell_all(impl: Any, study: Any, numbers: list[int], returns: Any, directions: list[str]) -> None:
    """Tell the study how each job ended; raise as the stock sweeper does past max_failure_rate."""
    failures = [exc for number, ret in zip(numbers, returns)
                if (exc := _tell(study, number, ret, len(directions))) is not None]
    if failures and len(failures) / len(returns) > impl.max_failure_rate:
        log.error("Failed %d time(s) out of %d with max_failure_rate=%s", len(failures), len(returns),
                  impl.max_failure_rate)
        for ret in returns:
            ret.return_value  # raises the job's own exception, with its traceback


def _tell(study: Any, number: int, ret: Any, n_directions: int) -> Exception | None:
    """COMPLETE with the returned value(s), PRUNED, or FAIL (returning the failure)."""
    import optuna
    from hydra.core.utils import JobStatus
    from optuna.trial import TrialState

    error = ret._return_value if ret.status == JobStatus.FAILED else None
    if isinstance(error, optuna.TrialPruned):
        _tell_study(study, number, state=TrialState.PRUNED)
        return None
    try:
        if error is not None:
            raise error
        raw = ret.return_value
        values = [float(raw)] if n_directions == 1 else [float(v) for v in raw]
        if len(values) != n_directions:
            raise ValueError(f"expected {n_directions} objective values, got {len(values)}")
    except Exception as exc:  # the stock sweeper's rule: any failure of a job is a FAIL trial
        _tell_study(study, number, state=TrialState.FAIL)
        log.warning("Failed trial %d: %s", number, exc)
        return exc
    _tell_study(study, number, values=values)
    return None


def _tell_study(study: Any, number: int, **outcome: Any) -> None:
    """``study.tell``, except that the GridSampler's ``study.stop()`` once the grid is done is a
    RuntimeError outside an objective (the state is stored before it; the stock sweeper ignores it too)."""
    try:
        study.tell(number, **outcome)
    except RuntimeError as exc:
        if "Study.stop" not in str(exc):
            raise


def _save_results(impl: Any, study: Any, directions: list[str]) -> None:
    """``optimization_results.yaml`` in the sweep directory, as the stock sweeper writes it."""
    from omegaconf import OmegaConf

    if not study.get_trials(deepcopy=False, states=_states()[:1]):
        return  # nothing completed (all pruned or failed): there is no best trial
    if len(directions) < 2:
        best = study.best_trial
        results = {"name": "optuna", "best_params": best.params, "best_value": best.value}
        log.info("Best parameters: %s, value %s", best.params, best.value)
    else:
        results = {"name": "optuna", "solutions": [{"params": t.params, "values": t.values} for t in study.best_trials]}
    OmegaConf.save(OmegaConf.create(results), f"{impl.config.hydra.sweep.dir}/optimization_results.yaml")
