"""The API document is the contract: the documentation pages load from the app alone, the
views carry what the workflow's models hold, query parameters and bodies that are not what the
document says are refused naming the field, instants are in UTC with Z, and messages read as
English. (Every answer of tests/test_api.py is checked against the document as it runs.)"""

from __future__ import annotations

from domain.text import with_article


def test_articles_follow_the_first_letter():
    assert with_article("operator") == "an operator"
    assert with_article("answer adoption") == "an answer adoption"
    assert with_article("coordinator") == "a coordinator"
