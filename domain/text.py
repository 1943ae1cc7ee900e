"""The English of messages a person reads."""


def with_article(noun: str) -> str:
    """ "an operator", "a coordinator": the article by the noun's first letter. The nouns the
    engine names this way (roles, actions) have no silent or sounded-out first letters."""
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun
