"""How notebooks show tables: a missing number (a NaN standard error at a minimum count) is "—"."""

import numpy as np
import pandas as pd
from IPython.core.interactiveshell import InteractiveShell

from rllc import notebook


def _table() -> pd.DataFrame:
    return pd.DataFrame({"component": ["0:0", "0:1"], "llc": [1.5, 2.25], "se": [np.nan, 0.125]})


def test_frames_show_missing_numbers_as_a_dash():
    html, text = notebook.frame_html(_table()), notebook.frame_text(_table())
    for out in (html, text):
        assert "NaN" not in out and "nan" not in out
        assert notebook.MISSING in out and "0.125" in out and "2.25" in out
    assert html.count(notebook.MISSING) == text.count(notebook.MISSING) == 1


def test_ipython_displays_frames_with_the_dash():
    shell = InteractiveShell.instance()
    try:
        before, _ = shell.display_formatter.format(_table())
        assert "NaN" in before["text/plain"]  # pandas' own repr, the oracle that the hook changes it
        notebook._show_missing_as_dash()
        after, _ = shell.display_formatter.format(_table())
        assert "NaN" not in after["text/html"] and notebook.MISSING in after["text/html"]
        assert notebook.MISSING in after["text/plain"] and "NaN" not in after["text/plain"]
    finally:
        for mime in ("text/html", "text/plain"):
            shell.display_formatter.formatters[mime].pop(pd.DataFrame, None)
        InteractiveShell.clear_instance()


def test_readings_show_a_missing_number_as_a_dash():
    assert notebook.fmt(0.1234, ".1%") == "12.3%" and notebook.fmt(2.0) == "2.00"
    for missing in (float("nan"), None, np.float64("nan"), float("inf")):
        assert notebook.fmt(missing, ".1f") == notebook.MISSING
