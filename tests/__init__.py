"""The topic tests: tests/test_<topic>.py. In an installed wheel they are the package kata.tests,
so `check()` in Colab runs the same tests as `pytest` in a clone."""
