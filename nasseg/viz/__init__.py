"""Pages that show nasseg's results and spaces: self-contained Plotly HTML (``nasseg dashboard``, ``nasseg explore``)."""
