"""Run every stage in order and skip the ones whose inputs have not changed: ``tickercast pipeline run``.

data -> preprocess -> train -> evaluate -> backtest -> serve. Each stage but ``serve`` runs as its own
``python -m tickercast <stage>`` process: training must (Lightning's DDP launcher re-executes the
command line for the other ranks), and the other stages gain from it too (the JVM and the torch
threads go away with the process, and the pipeline shows one tidy display while the full output
of every stage lands in ``DIR/.pipeline/logs/<stage>.log``).

What "unchanged" means is recorded in ``DIR/.pipeline/state.json`` after each stage succeeds, and
only then, so a failed stage leaves the record (and every earlier published output) as it was:

- **data** ran with the same source and options and its files are still there;
- **preprocess** saw the same raw files (sha256 of every ``raw/*/*.csv``) and the curated manifest
  still carries the ``data_version`` it published;
- **train** trained on the same ``data_version`` with the same settings and hyper-parameters, and
  that MLflow run still exists;
- **evaluate** reported on the same champion version and ``data_version``;
- **backtest** walked the same champion version forward on the same ``data_version`` with the same
  options (the baselines but AutoARIMA, origins fitting the champion's unseen window), and its
  ``leaderboard.json`` is still there.

Modules: :mod:`~tickercast.pipeline.stages` (the table of stages and the loop that runs it),
:mod:`~tickercast.pipeline.state` (the state file and the fingerprints),
:mod:`~tickercast.pipeline.runner` (one stage as a child process), :mod:`~tickercast.pipeline.display`
(the progress display and the closing summary) and :mod:`~tickercast.pipeline.cli` (the command).
"""
