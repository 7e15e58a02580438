"""Exercises for the notebooks, each with a checker that explains what is off.

A checker runs the student's function on random inputs, compares it with kdkit's reference
implementation and names the likely mistake (a missing ``T**2``, the wrong reduction, the
KL divergence taken the wrong way round) instead of only saying "wrong".
One module per notebook.
"""
