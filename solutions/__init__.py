"""The reference: what the stubs in exercises/ are generated from, and what each catalogued mistake
patches (kata/diagnose.py). In the wheel it is the package kata.solutions, as rustlings keeps its
solutions; `grader.py --compare TOPIC` shows it once the topic passes. Learner code cannot import
it, and the sandbox does not show it."""
