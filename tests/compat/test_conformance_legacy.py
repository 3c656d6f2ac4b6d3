"""The conformance suite (:mod:`keg_storage.testing`) run against a keg-storage 0.5 style custom
backend (conftest.py provides it as ``storage`` and says which cases cannot apply to one, and
why)."""

from keg_storage.testing import (
    CapabilityCases,
    ConditionalWriteCases,
    FileCases,
    LinkCases,
    LinkSigningCases,
    OperationCases,
    PathCases,
)


class TestLegacyConformance(
    FileCases,
    LinkCases,
    LinkSigningCases,
    OperationCases,
    PathCases,
    ConditionalWriteCases,
    CapabilityCases,
):
    pass
