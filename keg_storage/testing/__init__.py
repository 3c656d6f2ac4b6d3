"""keg_storage.testing: the conformance suite as a kit that any backend can run.

Every case of CONTRACT.md that a backend must keep is a method of one of the classes below, each
written against a pytest fixture named ``storage`` (a fresh, empty backend per test) that the
backend's author provides. Subclass :class:`ConformanceCases` (or the classes of the sections you
want) in a test module, with a name starting with ``Test``, and define the fixture::

    import pytest
    from keg_storage.testing import ConformanceCases

    class TestMyBackend(ConformanceCases):
        @pytest.fixture
        def storage(self, tmp_path):
            with MyStorage(tmp_path) as backend:
                yield backend

Needs pytest (``pip install "keg-storage[testing]"``; ``keg_storage`` itself never imports this
package). Flask is needed only by
:class:`LinkSigningCases` and the link cases of :class:`CapabilityCases` on a backend with internal
links; without it they skip. :class:`ConditionalWriteCases` and :class:`CapabilityCases` read the
backend's ``capabilities``: where a field is False they check the refusal instead. The docs page
"Writing a backend" walks through :mod:`keg_storage.testing.example`, a backend that passes it.
"""

from keg_storage.errors import MissingDependencyError

try:
    import pytest
except ImportError as exc:
    raise MissingDependencyError("keg_storage.testing", "testing", "pytest") from exc

# Assertions in the kit's modules get pytest's detailed failure messages, as a test module's do;
# registered before the modules are imported.
pytest.register_assert_rewrite(
    "keg_storage.testing.files",
    "keg_storage.testing.text_files",
    "keg_storage.testing.operations",
    "keg_storage.testing.paths",
    "keg_storage.testing.links",
    "keg_storage.testing.conditional",
    "keg_storage.testing.scopes",
    "keg_storage.testing.urls",
    "keg_storage.testing.bulk",
    "keg_storage.testing.listing",
)

from .bulk import BulkCases  # noqa: E402
from .conditional import CapabilityCases, ConditionalWriteCases  # noqa: E402
from .files import FileCases  # noqa: E402
from .helpers import BackendCases, MiB, names, payload, read, write  # noqa: E402
from .links import LinkCases, LinkSigningCases  # noqa: E402
from .listing import ListingCases  # noqa: E402
from .operations import OperationCases  # noqa: E402
from .paths import PathCases  # noqa: E402
from .scopes import ScopedCases, ScopedLinkCases  # noqa: E402
from .text_files import TextFileCases  # noqa: E402
from .urls import UrlCases  # noqa: E402


class ConformanceCases(
    FileCases,
    TextFileCases,
    OperationCases,
    ListingCases,
    PathCases,
    LinkCases,
    LinkSigningCases,
    ConditionalWriteCases,
    CapabilityCases,
    ScopedCases,
    ScopedLinkCases,
    BulkCases,
):
    """Every case of the conformance suite: what a backend must pass to be used as any other.
    (:class:`UrlCases` is apart: only the backends of :data:`keg_storage.urls.SCHEMES` have a
    URL.)"""


__all__ = [
    "BackendCases",
    "BulkCases",
    "CapabilityCases",
    "ConditionalWriteCases",
    "ConformanceCases",
    "FileCases",
    "LinkCases",
    "LinkSigningCases",
    "ListingCases",
    "MiB",
    "OperationCases",
    "PathCases",
    "ScopedCases",
    "ScopedLinkCases",
    "TextFileCases",
    "UrlCases",
    "names",
    "payload",
    "read",
    "write",
]
