"""agentstores: executable contracts for the stores behind AI agents.

``agentstores.spec`` holds the contract, ``agentstores.conformance`` the kit that checks a
backend against it, and ``agentstores.reference`` the reference backends.
"""

__version__ = "0.1.0"
