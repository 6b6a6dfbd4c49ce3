"""Loads the kata's pytest plugin (kata/plugin.py) for `pytest` run in this folder: the --impl
option, seeds, and the learner process that runs the code under test."""
pytest_plugins = ("kata.plugin",)
