"""The paper's analyses, on saved states: planner comparison (``compare``), amortization gap
(``gap``), multiple policy modes (``modes``), objective surfaces (``surface``) and value bias
(``bias``). Each writes its numbers (CSV + ``summary.json``) beside its plots (``plots.py``
redraws them from those files)."""
