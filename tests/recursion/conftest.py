"""Small examples for the recursion tests."""
import pytest

from shoulders.data.examples import Example


@pytest.fixture()
def examples():
    return [Example("the cat was born in", "paris"), Example("a happy dog is", "good"),
            Example("where is the red bird", "london")]
