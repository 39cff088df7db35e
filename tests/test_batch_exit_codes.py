import pytest

from cli.batch import FAILED, INVALID, RENDERED, UP_TO_DATE, BatchResult, Outcome


def result(*pairs):
    return BatchResult([Outcome(job=f"j{i}", status=s, exit_code=c) for i, (s, c) in enumerate(pairs)])


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([(RENDERED, 0), (UP_TO_DATE, 0)], 0),
        ([(RENDERED, 0), (FAILED, 3)], 3),
        ([(RENDERED, 0), (INVALID, 2)], 3),  # some jobs failed, the others finished
        ([(INVALID, 2), (INVALID, 2)], 2),  # nothing rendered and all invalid input
        ([(FAILED, 4)], 4),  # weights missing
        ([(FAILED, 4), (INVALID, 2)], 3),  # mixed failures, nothing rendered
        ([], 0),
    ],
)
def test_exit_code_rules(pairs, expected):
    assert result(*pairs).exit_code == expected
