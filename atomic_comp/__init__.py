"""atomic-comp: how language models compose atomic skills (parametric, contextual) into complementary reasoning."""

__version__ = "0.1.0"
