"""Support package for the makemore Part 3 kata: topic registry, implementation loader,
exercise generator, test helpers, data and the lecture runs."""

# Where the kata is published: the README's Colab cell and the workbook's first cell install it from
# here (python -m kata.workbook writes it into the workbook; meta/test_layout.py checks the README).
REPOSITORY = "<this repository's URL>"
