"""The claims table: one list of records drives both the rendered table and the checks cell's asserts."""

import numpy as np
import pytest
import torch

from ebmlib.report import Claims, budget_trend, styled_table


def test_claims_table_and_asserts_come_from_the_same_records():
    claims = Claims("book", "CPU (2 cores), torch 2")
    assert claims.add("A beats B per second", paper=2.0, ours=1.2345678, holds=True, asserted_at=("ci", "book"))
    assert not claims.add("C keeps mode weights", paper="yes", ours=0.5, holds=np.bool_(False), asserted_at=("book",))
    claims.add("D at full scale only", paper=None, ours=torch.tensor(3.0), holds=torch.tensor(False),
               asserted_at=("full",))
    assert claims.failing() == ["C keeps mode weights"]  # D fails too, but is asserted at full scale only
    frame = claims.frame()
    assert list(frame.columns) == ["claim", "paper", "this book", "holds", "with more budget", "asserted at"]
    assert frame["this book"].tolist() == ["1.23", "0.5", "3"]
    assert frame["paper"].tolist() == ["2", "yes", "—"]
    assert frame["holds"].tolist() == ["✓", "✗", "✗"]
    html = claims.table().to_html()
    assert "<caption>" in html and "book scale, CPU (2 cores), torch 2" in html
    assert html.count("CPU (2 cores)") == 1, "the hardware is stated once, in the caption"
    assert 'class="claims-table"' in html and ">holds<" in html
    assert Claims("full", "GPU").failing() == []


def test_claims_reject_bad_records():
    claims = Claims("ci", "CPU")
    with pytest.raises(ValueError, match="holds"):
        claims.add("x", paper=1, ours=1, holds=1)
    with pytest.raises(ValueError, match="asserted_at"):
        claims.add("x", paper=1, ours=1, holds=True, asserted_at=("gpu",))
    with pytest.raises(ValueError, match="asserted_at"):
        claims.add("x", paper=1, ours=1, holds=True, asserted_at="ci")
    with pytest.raises(ValueError, match="scale"):
        Claims("paper", "CPU")


def test_styled_table_is_narrow_and_rounded():
    import pandas as pd

    frame = pd.DataFrame({"method": ["a", "b"], "KL [nats]": [0.123456, float("nan")], "steps": [10, 2000],
                          "seconds": [12345.6, 2.5e-5]})
    html = styled_table(frame, "A caption").to_html()
    assert "0.123<" in html and "—" in html and "A caption" in html and ">2000<" in html
    assert ">12300<" in html and ">2.5e-05<" in html
    assert "row_heading" not in html, "no index column"
    with pytest.raises(ValueError, match="at most 8"):
        styled_table(pd.DataFrame({str(i): [1] for i in range(9)}), "wide")


def test_budget_trend_reads_the_gap_against_the_spread_over_seeds():
    budgets = [100, 200, 400, 800]
    spread = np.array([[0.01], [-0.01], [0.0]])  # three seeds
    assert budget_trend(budgets, np.array([[1.0, 0.5, 0.1, -0.2]]) + spread) == "holds"
    assert budget_trend(budgets, np.array([[1.0, 0.8, 0.6, 0.4]]) + spread) == "closing"
    assert budget_trend(budgets, np.array([[0.4, 0.6, 0.8, 1.0]]) + spread) == "widening"
    assert budget_trend(budgets, np.array([[0.5, 0.5, 0.5, 0.5]]) + 10 * spread) == "flat"
    # an error that rises, then falls: over the whole range it widens, with more budget it closes
    rise_fall = np.array([[0.2, 1.0, 0.8, 0.5]]) + spread
    assert budget_trend(budgets, rise_fall) == "widening"
    assert budget_trend(budgets, rise_fall, since=200) == "closing"
    with pytest.raises(ValueError, match="since"):
        budget_trend(budgets, rise_fall, since=800)
    with pytest.raises(ValueError, match="budgets"):
        budget_trend([100, 50], np.zeros((3, 2)))
    with pytest.raises(ValueError, match="gaps"):
        budget_trend(budgets, np.zeros((1, 4)))
    claims = Claims("book", "CPU")
    claims.add("A beats B", paper="yes", ours=0.1, holds=False, trend="closing")
    assert claims.frame()["with more budget"].tolist() == ["closing"]
    with pytest.raises(ValueError, match="trend"):
        claims.add("A beats B", paper="yes", ours=0.1, holds=False, trend="soon")
