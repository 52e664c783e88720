"""The lending policy: what a default costs and what a declined good loan loses.

The decision threshold follows from these two numbers (decline when the expected loss of
lending exceeds the expected margin), so this is the one place to change the risk appetite.
"""

# Loss on a defaulted loan, as a share of the amount lent.
COST_OF_DEFAULT = 1.0
# Margin earned on a good loan, as a share of the amount lent.
MARGIN_OF_GOOD_LOAN = 0.25


def break_even_threshold(
    cost_of_default: float = COST_OF_DEFAULT, margin: float = MARGIN_OF_GOOD_LOAN
) -> float:
    """Default probability above which lending loses money in expectation."""
    return margin / (cost_of_default + margin)
