"""Speed and memory benchmarks of the GSA-Nets layers (run from the repository root).

``python -m benchmarks.attention --help``; the measuring functions live in
:mod:`gsa_tutorial.profiling` so that the book's chapter 9 can use them without this folder.
"""
