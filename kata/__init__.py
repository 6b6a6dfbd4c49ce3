"""Support package for the makemore Part 3 kata: topic registry, implementation loader,
exercise generator, test helpers, data and the lecture runs."""
